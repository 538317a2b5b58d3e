"""``SimConfig(verify=True)``: after every step, the allocation that runs is valid and the simulator's
books agree with the decision maker's (the controller's state, or the direct engine's)."""

from __future__ import annotations

from optalloc.adaptive import ControllerState
from optalloc.core import SolverError, Unplaced, verify
from optalloc.sim.books import Books
from optalloc.sim.direct import DirectEngine
from optalloc.sim.timeshare import TimeshareEngine


def check_controller(policy: str, t: float, books: Books, state: ControllerState, names: tuple[str, ...]) -> None:
    """Verify the allocation the controller now runs, and that the books agree with it; raises
    :class:`SolverError` naming the first disagreement. ``names``: the scenario's job names."""
    waiting = tuple(Unplaced(name, "insufficient capacity") for name in state.queue)
    violations = verify(state.problem(), state.allocation.replace(unplaced=waiting))
    if violations:
        shown = "; ".join(str(v) for v in violations[:3])
        raise SolverError(f"{policy}: the committed allocation at t={t} is invalid: {shown}")
    mine = {names[j] for j in books.placements}
    if mine != set(state.running):
        raise SolverError(
            f"{policy}: simulator and controller disagree on what runs at t={t}: {sorted(mine ^ set(state.running))[:5]}"
        )
    if books.over_capacity():
        raise SolverError(f"{policy}: a node is over capacity at t={t}")
    if books.waiting != len(state.queue):
        raise SolverError(f"{policy}: {books.waiting} jobs wait in the simulator, {len(state.queue)} in the controller")


def check_direct(policy: str, t: float, books: Books, direct: DirectEngine | TimeshareEngine) -> None:
    """The same for the direct engine (or the time-share engine)."""
    found = direct.check(books.up)
    if found:
        raise SolverError(f"{policy}: the direct engine's allocation is invalid: {found[:3]}")
    if set(direct.running) != set(books.placements) or direct.queued != books.waiting:
        raise SolverError(f"{policy}: simulator and direct engine disagree at t={t}")
