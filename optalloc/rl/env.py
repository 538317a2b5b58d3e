"""``AllocationEnv``: a Gymnasium environment over the trace-driven simulator.

An episode replays a *window* of a :class:`~optalloc.sim.Scenario` (``window`` consecutive jobs by
arrival, from one of the ``starts``) through the production controller step, as
:func:`optalloc.sim.simulate` does (:class:`optalloc.sim.Replay`). The agent acts at every step of the
controller that has something to decide (:attr:`optalloc.adaptive.controller.Prepared.open`: jobs
wait and something changed that may let one start, or a re-solve is due); the other steps run as the
base configuration (FCFS + best-fit) says, which for them means doing nothing.

Two action modes (``mode``):

- ``algorithm`` -- (a) which scheduling algorithm takes this step: ``Discrete(len(arms))``, one arm per
  queue ordering x placement rule, plus ``exact`` (re-solve with CP-SAT now); see :mod:`optalloc.rl.arms`.
  Every action is always valid.
- ``job`` -- (b) which waiting job starts next: ``Discrete(features.candidates)``, action ``k`` starts
  the ``k``-th job, in queue order, of those that fit now (:mod:`optalloc.rl.picker`); the ``rule``
  places it. One environment step per start with a choice (a lone candidate starts without asking);
  the controller commits the starts of a step once no waiting job fits. Actions beyond the candidates are masked (:meth:`AllocationEnv.action_masks`, as
  sb3-contrib's MaskablePPO reads it); stable-baselines3's DQN and PPO have no masks, so a masked
  action falls back to the first candidate (the oldest job that fits: FCFS with backfilling), with
  ``reward.invalid`` subtracted and ``info["invalid"]`` set.

Observation: :mod:`optalloc.rl.features` (a float32 vector in [0, 1]). Reward: :mod:`optalloc.rl.reward`
(default: minus the job-seconds spent in the system since the last decision, over the mean job runtime;
the return is minus the sum of the JCTs, scaled). An episode ends (``terminated``) when every job of the
window has finished (or was rejected) or at ``sim.until``; ``max_steps`` decisions truncate it. A
window that runs to its end without a choice to make (nothing ever waits) is an episode of one step
whose action is ignored (``info["no_choice"]``).

Deterministic for a seed: ``reset(seed=s)`` draws the window start and the usage seed from
``self.np_random``, and the heuristic arms are deterministic. The ``exact`` arm runs CP-SAT in
deterministic mode (a work limit, one worker), which repeats only while the work limit ends the search
before the wall clock does: on a loaded machine a re-solve cut by the clock can differ, and the episode
diverge from there (docs/rl.md, "Results").
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from optalloc.adaptive.controller import Prepared, act, prepare
from optalloc.adaptive.tiers import thresholds_for
from optalloc.core import ProblemError
from optalloc.rl.arms import Arm, base_config
from optalloc.rl.arms import arms as make_arms
from optalloc.rl.features import Features, observe
from optalloc.rl.picker import Picker
from optalloc.rl.reward import Reward
from optalloc.sim import Pending, Policy, Replay, Scenario, SimConfig, SimResult, simulate
from optalloc.sim import policy as sim_policy

MODES = ("algorithm", "job")
#: Seconds between the controller's ticks (observations of usage) unless ``sim`` says otherwise: coarser
#: than the simulator's default (60 s) because every tick is a step, and training replays many episodes.
DEFAULT_TICK = 600.0


class AllocationEnv(gymnasium.Env):
    """The environment (module docstring).

    ``scenario``: the workload episodes are drawn from. ``mode``: ``algorithm`` or ``job``. ``arms``:
    the algorithm-choice mode's actions (names, or ``all`` / ``compact``; :mod:`optalloc.rl.arms`).
    ``rule``: the job-choice mode's placement rule. ``features``: the observation's layout (default
    :class:`Features` with 8 candidates in the job-choice mode). ``reward``: :class:`Reward` weights.
    ``window``: jobs per episode (None: the whole scenario). ``starts``: the first job (by arrival) of
    the windows an episode may replay (default: 0, window, 2 window, ... -- disjoint windows).
    ``sim``: the simulator's settings (tick, usage, restarts, ``verify``; its seed is drawn per
    episode; default: ticks every :data:`DEFAULT_TICK` s). ``budget``: seconds of the ``exact`` arm;
    ``tiers``: its duration tiers (default: the quartiles of the scenario's estimated durations, as the
    ``rolling-horizon`` policy). ``max_steps``: decisions per episode at most. ``baseline``: a simulator
    policy whose mean JCT on the episode's window is reported at the episode's end
    (``info["baseline_jct"]``), for learning curves; ``baseline_jcts`` caches it per window start (a
    dictionary environments over the same scenario and settings may share).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        scenario: Scenario,
        *,
        mode: str = "algorithm",
        arms: Sequence[str] | str | None = "all",
        rule: str = "best-fit",
        features: Features | None = None,
        reward: Reward | None = None,
        window: int | None = 100,
        starts: Sequence[int] | None = None,
        sim: SimConfig | None = None,
        budget: float = 0.5,
        max_steps: int | None = None,
        tiers: Sequence[float] | None = None,
        baseline: str | None = None,
    ) -> None:
        from optalloc import heuristics

        if not isinstance(scenario, Scenario):
            raise ProblemError("scenario", type(scenario).__name__, "is not an optalloc.sim.Scenario")
        if not scenario.jobs:
            raise ProblemError("scenario", scenario.name, "has no jobs")
        if mode not in MODES:
            raise ProblemError("mode", mode, f"is not one of {', '.join(MODES)}")
        if rule not in heuristics.RULES:
            raise ProblemError("rule", rule, f"is not a placement rule (known: {', '.join(heuristics.RULES)})")
        total = len(scenario.jobs)
        if window is not None and not (isinstance(window, int) and window >= 1):
            raise ProblemError("window", window, "is not a positive number of jobs")
        size = total if window is None else min(window, total)
        if starts is None:
            starts = list(range(0, max(1, total - size + 1), size))
        starts = [int(s) for s in starts]
        if not starts:
            raise ProblemError("starts", starts, "is empty")
        for s in starts:
            if not 0 <= s < total:
                raise ProblemError("starts", s, f"is not a job position in 0..{total - 1}")
        if max_steps is not None and not (isinstance(max_steps, int) and max_steps >= 1):
            raise ProblemError("max_steps", max_steps, "is not a positive number of decisions")
        self.scenario = scenario
        self.mode = mode
        self.rule = rule
        self.window = size
        self.starts = tuple(starts)
        self.sim = sim if sim is not None else SimConfig(tick=DEFAULT_TICK)
        self.budget = budget
        self.max_steps = max_steps
        self.reward_weights = reward if reward is not None else Reward()
        if features is None:
            features = Features(candidates=8) if mode == "job" else Features()
        if mode == "job" and features.candidates < 1:
            raise ProblemError("features.candidates", features.candidates, "is 0: the job-choice mode needs >= 1")
        self.features = features
        if tiers is None:
            tiers = thresholds_for([j.duration for j in scenario.jobs if j.duration is not None])
        self.tiers = tuple(float(t) for t in tiers)
        self.arms: tuple[Arm, ...] = make_arms(arms, budget=budget, tiers=self.tiers) if mode == "algorithm" else ()
        self.baseline = baseline
        self.baseline_jcts: dict[int, float] = {}
        if baseline is not None:
            sim_policy(baseline)  # a bad name fails now, not at the end of the first episode
        self.arm_names = tuple(a.name for a in self.arms)
        self.base = base_config()
        n_actions = len(self.arms) if mode == "algorithm" else features.candidates
        self.action_space = spaces.Discrete(n_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(features.size,), dtype=np.float32)
        self._windows: dict[int, Scenario] = {}
        self._replay: Replay | None = None
        self._pending: Pending | None = None
        self._prepared: Prepared | None = None
        self._picker: Picker | None = None
        self._done = True
        self._area = np.zeros(3)
        self._scale = 1.0
        self._gpus = 0.0
        self.decisions = 0
        self.start = self.starts[0]
        self._started = time.perf_counter()

    # Gymnasium API ------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new episode: a window (``options["start"]``, or one of ``starts`` drawn from the seed)."""
        super().reset(seed=seed)
        rng = self.np_random
        pick = int(rng.integers(len(self.starts)))
        usage_seed = int(rng.integers(2**31 - 1))
        start = self.starts[pick]
        if options and "start" in options:
            start = int(options["start"])
            if not 0 <= start < len(self.scenario.jobs):
                raise ProblemError("options.start", start, f"is not a job position in 0..{len(self.scenario.jobs) - 1}")
        self.start = start
        episode = self.episode_scenario(start)
        self._replay = Replay(
            episode, Policy("rl-env", self.base, "the environment", "learned"), replace(self.sim, seed=usage_seed)
        )
        self._area = np.zeros(3)
        self._scale = mean_runtime(episode)
        self._gpus = float(episode.problem.node_gpus.sum())
        self._done = False
        self.decisions = 0
        self._started = time.perf_counter()
        self._advance()
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._replay is None or (self._done and self.decisions):
            raise RuntimeError("step() called on a finished episode: call reset() first")
        a = int(action)
        if not 0 <= a < self.action_space.n:
            raise ProblemError("action", action, f"is not in 0..{self.action_space.n - 1}")
        self.decisions += 1
        info: dict[str, Any] = {}
        penalty = 0.0
        if self._done:  # the window ran to its end without a choice to make: one step to say so
            info["no_choice"] = True
        elif self.mode == "algorithm":
            arm = self.arms[a]
            info["arm"] = arm.name
            self._commit(arm.config)
        else:
            picker = self._picker
            assert picker is not None
            if a >= len(picker.candidates):
                info["invalid"] = True
                penalty = self.reward_weights.invalid
                a = 0
            info["job"] = picker.candidates[a]
            picker.pick(a)
            picker.settle()
            if not picker.candidates:
                self._commit(picker.proposal())
        area = self._replay.area.copy()
        reward = self.reward_weights.of(area - self._area, self._gpus, self._scale) - penalty
        self._area = area
        truncated = not self._done and self.max_steps is not None and self.decisions >= self.max_steps
        info.update(self._info())
        if self._done or truncated:
            info["jct"], info["wait"] = self._episode_means()
            if self.baseline is not None:
                info["baseline_jct"] = self.baseline_jct(self.start)
        return self._observation(), float(reward), self._done, truncated, info

    def action_masks(self) -> np.ndarray:
        """bool (actions,): which actions are valid now (the job-choice mode's candidates)."""
        n = int(self.action_space.n)
        if self.mode == "algorithm" or self._picker is None:
            return np.ones(n, dtype=bool)
        return np.arange(n) < len(self._picker.candidates)

    # Episodes -----------------------------------------------------------------------------------
    def episode_scenario(self, start: int) -> Scenario:
        """The window of jobs an episode starting at job position ``start`` replays."""
        found = self._windows.get(start)
        if found is None:
            found = self._windows[start] = self.scenario.select(start, self.window)
        return found

    def baseline_jct(self, start: int) -> float:
        """The mean JCT (s) of the ``baseline`` policy on the window at ``start`` (usage seed 0; cached):
        the learning curve compares each episode with it, since windows differ far more than policies."""
        if self.baseline is None:
            return math.nan
        found = self.baseline_jcts.get(start)
        if found is None:
            episode = self.episode_scenario(start)
            durations = [j.duration for j in episode.jobs if j.duration is not None]
            result = simulate(
                episode, sim_policy(self.baseline, durations=durations), replace(self.sim, seed=0, verify=False)
            )
            jobs = result.jobs
            finished = np.isfinite(jobs.finish)
            found = float((jobs.finish[finished] - jobs.arrival[finished]).mean()) if finished.any() else math.nan
            self.baseline_jcts[start] = found
        return found

    def result(self) -> SimResult:
        """The simulator's result of the episode so far (metrics, per-job table, timeline)."""
        if self._replay is None:
            raise RuntimeError("no episode yet: call reset() first")
        return self._replay.result(time.perf_counter() - self._started)

    @property
    def replay(self) -> Replay | None:
        """The simulation of the current episode (its books, clock and controller state)."""
        return self._replay

    # Internals ----------------------------------------------------------------------------------
    def _advance(self) -> None:
        """Run the simulation to the next step that has something to decide (or to its end)."""
        replay = self._replay
        assert replay is not None
        self._prepared = self._pending = self._picker = None
        while True:
            pending = replay.advance()
            if pending is None:
                replay.finish()
                self._done = True
                return
            before = time.perf_counter()
            prepared = prepare(replay.state, pending.time, pending.observation, pending.events)
            if prepared.open:
                if self.mode == "algorithm":
                    replay.controller_time += time.perf_counter() - before
                    self._pending, self._prepared = pending, prepared
                    return
                picker = Picker(prepared.state, self.rule, self.features.candidates)
                picker.settle()
                if picker.candidates:
                    replay.controller_time += time.perf_counter() - before
                    self._pending, self._prepared, self._picker = pending, prepared, picker
                    return
                state, plan = act(prepared, picker.proposal())
            else:
                state, plan = act(prepared)
            replay.controller_time += time.perf_counter() - before
            replay.apply(pending, plan, state)

    def _commit(self, choice: Any) -> None:
        replay, pending, prepared = self._replay, self._pending, self._prepared
        assert replay is not None and pending is not None and prepared is not None
        before = time.perf_counter()
        state, plan = act(prepared, choice)
        replay.controller_time += time.perf_counter() - before
        replay.apply(pending, plan, state)
        self._advance()

    def _observation(self) -> np.ndarray:
        replay = self._replay
        assert replay is not None
        if self._picker is not None and self._prepared is not None:
            return np.asarray(self._picker.observe(self._prepared.now, self.features), dtype=np.float32)
        if self._prepared is not None:
            return observe(self._prepared.state, self._prepared.now, self.features)
        return observe(replay.state, replay.now, self.features)

    def _episode_means(self) -> tuple[float, float]:
        """Mean JCT of the jobs finished and mean queueing delay of the jobs started so far (s)."""
        replay = self._replay
        assert replay is not None
        b = replay.books
        arrival = replay.scenario.problem.job_arrival
        finished = np.isfinite(b.finish)
        started = np.isfinite(b.first_start)
        jct = float((b.finish[finished] - arrival[finished]).mean()) if finished.any() else math.nan
        wait = float((b.first_start[started] - arrival[started]).mean()) if started.any() else math.nan
        return jct, wait

    def _info(self) -> dict[str, Any]:
        replay = self._replay
        assert replay is not None
        b = replay.books
        return {
            "time": replay.now,
            "start": self.start,
            "decisions": self.decisions,
            "waiting": int(b.waiting),
            "running": int(b.running),
            "done": int(b.done),
            "action_mask": self.action_masks(),
        }


def mean_runtime(scenario: Scenario) -> float:
    """The mean runtime (seconds, on each job's fastest GPU model) of the scenario's jobs (>= 1)."""
    runtime = np.where(np.isfinite(scenario.runtime), scenario.runtime, np.nan)
    with np.errstate(all="ignore"):
        fastest = np.nanmin(runtime, axis=1) if runtime.size else np.zeros(0)
    fastest = fastest[np.isfinite(fastest)]
    value = float(fastest.mean()) if len(fastest) else 1.0
    return value if math.isfinite(value) and value >= 1.0 else 1.0
