"""The job-choice mode's mechanics: which waiting job starts next, one at a time.

At a step that has something to decide, a :class:`Picker` opens the controller's window (the running
jobs and the queue) on a :class:`~optalloc.heuristics.Placer` with the placement ``rule``. Its
*candidates* are the first ``slots`` waiting jobs, in queue order, that fit now (all replicas of a
gang; an elastic job at least its minimum); the agent picks one, the rule places it, and the
candidates are recomputed, until none fits (a lone candidate starts without asking: :meth:`Picker.settle`). :meth:`Picker.proposal` is then the allocation to adopt:
what runs, plus the jobs started, every other waiting job listed as unplaced with its reason. The
controller verifies it before it commits it (:func:`optalloc.adaptive.controller.act`).

The environment lets the agent pick (one environment step per pick); a trained policy deployed in the
controller picks with the same object (:class:`optalloc.rl.policy.LearnedSelector`). The choice is
work-conserving: the agent chooses the order, not whether to start a job that fits.
"""

from __future__ import annotations

from optalloc.adaptive import ControllerState
from optalloc.core import Allocation, Placement, Status, Unplaced
from optalloc.rl.features import Features, FreeView, observe


class Picker:
    """The choices of one step of the job-choice mode (module docstring)."""

    def __init__(self, state: ControllerState, rule: str, slots: int, *, seed: int = 0) -> None:
        from optalloc import heuristics

        self.state = state
        self.problem = state.problem()
        self.placer = heuristics.Placer(self.problem, rule, seed=seed)
        self.slots = slots
        self.rule = rule
        offset = len(self.problem.jobs) - len(state.queue)  # running jobs come first in the window
        self.index = {name: offset + k for k, name in enumerate(state.queue)}
        self.waiting = list(state.queue)
        self.started: list[tuple[Placement, ...]] = []
        self._blocked: set[str] = set()  # did not fit since the last start: the cluster only filled up since
        self.candidates: list[str] = []
        self._refresh()

    def _fits(self, name: str) -> bool:
        j = self.index[name]
        if self.problem.jobs[j].replicas == 1:
            return bool(self.placer.fits(j).any())
        got = self.placer.place(j)
        if got is None:
            return False
        self.placer.release(got)
        return True

    def _refresh(self) -> None:
        found: list[str] = []
        for name in self.waiting:
            if name in self._blocked:
                continue
            if self._fits(name):
                found.append(name)
                if len(found) == self.slots:
                    break
            else:
                self._blocked.add(name)
        self.candidates = found

    def pick(self, k: int) -> tuple[Placement, ...]:
        """Start candidate ``k`` (it must exist: see ``candidates``) where the rule places it."""
        name = self.candidates[k]
        got = self.placer.place(self.index[name])
        if got is None:  # the candidates fit a moment ago and nothing changed since
            raise RuntimeError(f"candidate {name!r} no longer fits")
        self.started.append(got)
        self.waiting.remove(name)
        self._refresh()
        return got

    def settle(self) -> None:
        """Start the lone candidate while there is exactly one: no choice to make."""
        while len(self.candidates) == 1:
            self.pick(0)

    def observe(self, now: float, features: Features) -> object:
        """The observation with the candidates and what is free after the starts chosen so far."""
        view = FreeView.of_cluster(self.placer.state, features.models)
        return observe(self.state, now, features, candidates=self.candidates, free=view)

    def proposal(self) -> Allocation:
        """What runs once the chosen jobs start; the other waiting jobs unplaced, with the reason."""
        placements = tuple(self.state.allocation.placements) + tuple(p for ps in self.started for p in ps)
        unplaced = tuple(
            Unplaced(name, "insufficient capacity" if name in self._blocked else "not chosen at this step")
            for name in self.waiting
        )
        return Allocation(placements, unplaced, method=f"learned+{self.rule}", status=Status.FEASIBLE)
