"""The controller step: triggers, admission, events, stale data, migration cap, fallback, right-sizing,
the horizon mode. Heuristic methods only (fast); fake engines stand in for exact ones."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

import pytest

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, SolverError, Status, Unplaced, verify
from optalloc.adaptive import (
    ActionKind,
    ControllerConfig,
    ControllerState,
    DriftConfig,
    Event,
    FallbackReason,
    HorizonConfig,
    JobUsage,
    NodeUsage,
    Observation,
    RightSizing,
    events_between,
    step,
)
from optalloc.adaptive.controller import act, prepare
from optalloc.core.options import SolveOptions
from optalloc.solve import Method

solve_mod = importlib.import_module("optalloc.solve")  # the module (optalloc.solve is also the function)


def gpu_nodes(*names: str, gpus: int = 1) -> tuple[Node, ...]:
    return tuple(Node(n, cpu=16000, memory=64000, gpus=gpus, gpu_model="A", gpu_memory=16000) for n in names)


def config(**changes: object) -> ControllerConfig:
    base: dict[str, object] = {
        "method": "best-fit",
        "drift": DriftConfig(tau=1.0, min_interval=0.0, node_high=None),
    }
    base.update(changes)
    return ControllerConfig.of(**base)


def valid(state: ControllerState) -> None:
    """The running allocation passes verify on the state's window (the waiting jobs listed as unplaced)."""
    waiting = tuple(Unplaced(name, "insufficient capacity") for name in state.queue)
    assert verify(state.problem(), state.allocation.replace(unplaced=waiting)) == []


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[[Problem, SolveOptions], Allocation]], None]:
    """Register a fake engine for one test (the registry is restored afterwards)."""
    solve_mod.methods()  # load the built-ins first

    def add(name: str, run: Callable[[Problem, SolveOptions], Allocation]) -> None:
        monkeypatch.setitem(solve_mod._REGISTRY, name, Method(name, run, "exact", "test engine"))

    return add


def nothing(problem: Problem, method: str, status: Status) -> Allocation:
    """A valid answer without a solution: every job left out (what an engine returns when time runs out)."""
    return Allocation(
        unplaced=tuple(Unplaced(j.name, "time limit") for j in problem.jobs), method=method, status=status
    )


def test_first_step_places_the_waiting_jobs_and_says_why() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1, arrival=5), Job("c", gpus=1)))
    st, plan = step(ControllerState.initial(problem, config()), 10.0)
    assert plan.trigger is not None and plan.trigger.kind == "initial"
    assert {a.job for a in plan.starts} == {"a", "c"}  # FCFS: c arrived at 0, b at 5
    assert all("initial re-solve by best-fit" in a.reason for a in plan.starts)
    assert st.queue == ("b",)
    assert [u.job for u in plan.allocation.unplaced] == ["b"]
    assert plan.allocation.unplaced[0].reason == "insufficient capacity"
    valid(st)


def test_a_step_without_trigger_solves_nothing_and_keeps_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1), Job("b", gpus=1)))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    calls: list[str] = []
    real = solve_mod.solve
    monkeypatch.setattr(solve_mod, "solve", lambda *a, **k: calls.append("solve") or real(*a, **k))
    obs = Observation(1.0, {"n0": NodeUsage(gpu_milli=1000.0, cpu=0.0, memory=0.0)})
    for t in range(1, 50):
        st2, plan = step(st, float(t), obs.at(float(t)))
        assert plan.actions == () and plan.trigger is None
        assert plan.allocation is st.allocation
        st = st2
    assert calls == []
    assert st.steps == 50


def test_an_arrival_is_admitted_around_running_jobs_without_moving_them() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1),))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    before = st.allocation.placements
    st, plan = step(st, 1.0, events=[Event.arrival(Job("new", gpus=1, arrival=1.0))])
    assert plan.trigger is not None and plan.trigger.kind == "admit"
    assert [a.job for a in plan.starts] == ["new"]
    assert plan.migrations == () and plan.preemptions == ()
    assert set(before) <= set(st.allocation.placements)


def test_a_completion_frees_room_for_a_waiting_job() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1), Job("b", gpus=1, arrival=1)))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    assert st.queue == ("b",)
    st, plan = step(st, 5.0, events=[Event.completion("a")])
    assert [a.job for a in plan.starts] == ["b"]
    assert "a" not in st.jobs and st.queue == ()
    assert st.started["b"] == 5.0


def test_a_lost_node_preempts_its_jobs_which_restart_elsewhere() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1),))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    where = st.allocation.placements[0].node
    st, plan = step(st, 1.0, events=[Event.node_lost(where)])
    assert plan.trigger is not None and plan.trigger.kind == "node-lost"
    kinds = [(a.kind, a.job) for a in plan.actions]
    assert (ActionKind.PREEMPT, "a") in kinds and (ActionKind.START, "a") in kinds
    assert "was lost" in plan.preemptions[0].reason
    assert [n.name for n in st.nodes] == [n for n in ("n0", "n1") if n != where]
    assert st.allocation.placements[0].node != where
    valid(st)


def test_an_added_node_takes_waiting_jobs() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1), Job("b", gpus=1)))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    st, plan = step(st, 1.0, events=[Event.node_added(gpu_nodes("n9")[0])])
    assert plan.trigger is not None and plan.trigger.kind == "node-added"
    assert [a.nodes for a in plan.starts] == [("n9",)]


def test_unknown_events_are_ignored_and_the_clock_never_goes_back() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    st, _ = step(ControllerState.initial(problem, config()), 10.0)
    events = [Event.completion("ghost"), Event.node_lost("nowhere"), Event.arrival(Job("a", gpus=1))]
    st, plan = step(st, 5.0, events=events)
    assert plan.actions == () and st.time == 10.0 and "a" in st.running


def test_stale_data_keeps_the_last_plan_and_blocks_drift_triggers() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1)))
    st, first = step(ControllerState.initial(problem, config()), 0.0)
    st, _ = step(st, 1.0, Observation(1.0, {"n0": NodeUsage(gpu_milli=1000.0), "n1": NodeUsage(gpu_milli=1000.0)}))
    st, plan = step(st, 2.0, Observation.missing(2.0, "prometheus unreachable"))
    assert st.stale and plan.stale and st.error == "prometheus unreachable"
    assert plan.actions == () and plan.allocation == first.allocation
    assert st.plan is first
    # Smoothed drift is high now, but the data is stale: nothing happens.
    st = dataclasses.replace(st, drift=st.drift.replace(cluster=0.9, armed=True))
    st, plan = step(st, 3.0, Observation.missing(3.0, "still down"))
    assert plan.trigger is None and st.stale
    st, plan = step(st, 4.0, Observation(4.0, {"n0": NodeUsage(gpu_milli=1000.0), "n1": NodeUsage(gpu_milli=1000.0)}))
    assert not st.stale and not plan.stale


def test_an_observation_without_a_usable_time_counts_as_stale() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    st, plan = step(st, 1.0, Observation(float("nan"), {"n0": NodeUsage(gpu_milli=0.0)}))
    assert st.stale and plan.stale and "not a finite number" in st.error
    assert st.drift.time is None


def test_drift_triggers_a_resolve_once_then_waits_for_it_to_fall() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1)))
    st, _ = step(ControllerState.initial(problem, config()), 0.0)
    busy = {"n0": NodeUsage(gpu_milli=1000.0), "n1": NodeUsage(gpu_milli=1000.0)}
    idle = {"n0": NodeUsage(gpu_milli=100.0), "n1": NodeUsage(gpu_milli=100.0)}
    st, plan = step(st, 1.0, Observation(1.0, busy))
    assert plan.trigger is None
    triggers = []
    for t in range(2, 12):
        st, plan = step(st, float(t), Observation(float(t), idle))
        if plan.trigger is not None:
            triggers.append(plan.trigger.kind)
    assert triggers == ["drift"]
    assert st.resolves == 2  # the initial one and the drift one


def test_the_migration_cap_keeps_the_other_jobs_where_they_run(engines) -> None:  # type: ignore[no-untyped-def]
    nodes = gpu_nodes("n0", "n1", "n2", "m0", "m1", "m2")
    running = tuple(Job(f"r{i}", gpus=1) for i in range(3))
    current = Allocation(tuple(Placement(f"r{i}", 0, f"n{i}", (0,), 1000) for i in range(3)))

    def shuffle(problem: Problem, options: SolveOptions) -> Allocation:
        moved = [Placement(f"r{i}", 0, f"m{i}", (0,), 1000) for i in range(3)]
        return Allocation((*moved, Placement("q", 0, "n0", (0,), 1000)), method="shuffle", status=Status.OPTIMAL)

    engines("shuffle", shuffle)
    problem = Problem(nodes, (*running, Job("q", gpus=1)), current=current)
    st, plan = step(ControllerState.initial(problem, config(method="shuffle", max_migrations=1)), 0.0)
    assert [(a.job, a.previous_nodes, a.nodes) for a in plan.migrations] == [("r0", ("n0",), ("m0",))]
    assert [(a.job, a.nodes) for a in plan.starts] == [("q", ("n0",))]
    assert {p.job: p.node for p in st.allocation.placements} == {"r0": "m0", "r1": "n1", "r2": "n2", "q": "n0"}
    assert "moved from ['n0'] to ['m0']" in plan.migrations[0].reason
    valid(st)


def test_the_heuristic_stands_in_when_the_exact_method_has_no_answer_and_says_why(engines, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engines("never", lambda p, o: nothing(p, "never", Status.UNKNOWN))
    engines("impossible", lambda p, o: nothing(p, "impossible", Status.INFEASIBLE))
    missing = Method("missing", lambda p, o: Allocation(), "exact", "needs a module", requires=("no_such_module_x",))
    monkeypatch.setitem(solve_mod._REGISTRY, "missing", missing)
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    for method, reason in (
        ("never", FallbackReason.NO_ANSWER),
        ("impossible", FallbackReason.INFEASIBLE),
        ("missing", FallbackReason.UNAVAILABLE),
    ):
        st, plan = step(ControllerState.initial(problem, config(method=method)), 0.0)
        assert plan.fallback is reason and plan.method == "best-fit"
        assert [a.job for a in plan.starts] == ["a"]
        assert method in plan.error
        assert plan.allocation.stats["fallback"] == reason.value
        assert plan.allocation.stats["fallback_from"] == method
        assert plan.to_dict()["fallback"] == reason.value
        assert st.fallbacks == 1
    st, plan = step(ControllerState.initial(problem, config(method="best-fit")), 0.0)
    assert plan.fallback is None and st.fallbacks == 0 and "fallback" not in plan.allocation.stats


def test_jobs_a_solve_ran_out_of_time_for_are_tried_again_at_the_next_step(engines) -> None:  # type: ignore[no-untyped-def]
    engines("out-of-time", lambda p, o: nothing(p, "out-of-time", Status.FEASIBLE))
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    st, plan = step(ControllerState.initial(problem, config(method="out-of-time")), 0.0)
    assert plan.starts == () and st.queue == ("a",)
    assert plan.allocation.unplaced[0].reason == "time limit"
    st, plan = step(st, 1.0)  # no event, no trigger: the admission by the fallback heuristic places it
    assert plan.trigger is not None and plan.trigger.kind == "admit"
    assert [a.job for a in plan.starts] == ["a"] and st.queue == ()
    valid(st)


def test_jobs_that_did_not_fit_wait_for_an_event_before_they_are_tried_again() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1), Job("b", gpus=1)))
    st, plan = step(ControllerState.initial(problem, config()), 0.0)
    assert st.queue == ("b",) and plan.allocation.unplaced[0].reason == "insufficient capacity"
    st, plan = step(st, 1.0)
    assert plan.trigger is None and plan.actions == ()


def test_an_engine_that_raises_is_a_bug_not_a_fallback(engines) -> None:  # type: ignore[no-untyped-def]
    """No blanket except: the exception reaches the caller of the step (tests and benchmarks fail on it)."""

    def boom(problem: Problem, options: SolveOptions) -> Allocation:
        raise RuntimeError("solver crashed")

    engines("boom", boom)
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    with pytest.raises(RuntimeError, match="solver crashed"):
        step(ControllerState.initial(problem, config(method="boom")), 0.0)


def test_solve_options_live_in_one_place(engines) -> None:  # type: ignore[no-untyped-def]
    """ControllerConfig embeds SolveOptions: the keyword form, the options' own validation, and the
    fields the controller sets per solve."""
    seen: list[SolveOptions] = []
    engines("spy", lambda p, o: seen.append(o) or nothing(p, "spy", Status.UNKNOWN))
    cfg = ControllerConfig.of(method="spy", budget=0.5, seed=7, workers=1, relative_gap=0.01)
    assert cfg.options == SolveOptions(time_limit=0.5, seed=7, workers=1, relative_gap=0.01)
    assert cfg.budget == 0.5 and ControllerConfig().budget == 1.0
    step(ControllerState.initial(Problem(gpu_nodes("n0"), (Job("a", gpus=1),)), cfg), 0.0)
    (used,) = seen
    assert (used.seed, used.workers, used.relative_gap, used.allow_migration) == (7, 1, 0.01, True)
    assert 0 < used.time_limit <= 0.5
    for bad, field in ((dict(budget=True), "time_limit"), (dict(budget=0), "time_limit"), (dict(seeds=1), "seeds")):
        with pytest.raises(ProblemError, match=field):
            ControllerConfig.of(**bad)
    for options, field in ((SolveOptions(allow_migration=True), "allow_migration"), (SolveOptions(round=3), "round")):
        with pytest.raises(ProblemError, match=field):
            ControllerConfig(options=options)
    with pytest.raises(ProblemError, match="time_limit"):
        ControllerConfig(options=SolveOptions(time_limit=None))


def test_right_sizing_shares_an_idle_gpu_with_a_waiting_job_when_opted_in() -> None:
    nodes = gpu_nodes("n0")
    current = Allocation((Placement("big", 0, "n0", (0,), 1000),))
    problem = Problem(nodes, (Job("big", gpus=1), Job("small", gpu_milli=500, arrival=1)), current=current)
    idle = {"big": JobUsage(gpu_milli=200.0, gpu_memory=3000.0, gpus=1)}
    for right_size, expect in (
        (None, False),
        (RightSizing(jobs=frozenset({"other"})), False),
        (RightSizing(tau=0.5, min_observations=2), True),
    ):
        st, _ = step(ControllerState.initial(problem, config(right_size=right_size)), 0.0)
        resized = False
        for t in range(1, 8):
            obs = Observation(float(t), {"n0": NodeUsage(gpu_milli=200.0)}, idle)
            st, plan = step(st, float(t), obs)
            if plan.resizes:
                resized = True
                (action,) = plan.resizes
                assert action.placements[0].gpu_milli == 250  # 200 x 1.25 headroom, a multiple of 50
                assert "observed 200 milli-GPU" in action.reason
                assert [a.job for a in plan.starts] == ["small"]
                assert plan.resized["big"].gpu_milli == 250 and plan.resized["big"].gpu_memory == 3750
                assert st.requested["big"].gpus == 1
                valid(st)
        assert resized is expect


def test_horizon_mode_commits_only_the_jobs_that_start_now() -> None:
    jobs = (
        Job("long", gpus=1, duration=1000, arrival=0),
        Job("short", gpus=1, duration=100, arrival=1),
        Job("mid", gpus=1, duration=300, arrival=2),
    )
    cfg = config(horizon=HorizonConfig(horizon=2400, slots=24))
    st, plan = step(ControllerState.initial(Problem(gpu_nodes("n0"), jobs), cfg), 10.0)
    assert [a.job for a in plan.starts] == ["short"]
    assert "the horizon model starts it now" in plan.starts[0].reason
    assert plan.horizon is not None and plan.horizon.status == "optimal"
    assert {u.job: u.detail for u in plan.allocation.unplaced} == {
        "long": "the horizon model starts it later",
        "mid": "the horizon model starts it later",
    }
    st, plan = step(st, 110.0, events=[Event.completion("short")])
    assert [a.job for a in plan.starts] == ["mid"]


def test_events_between_two_problem_files() -> None:
    before = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1)))
    after = Problem(gpu_nodes("n1", "n2"), (Job("b", gpus=1), Job("c", gpus=1)))
    kinds = sorted((e.kind.value, e.name) for e in events_between(before, after))
    assert kinds == [("arrival", "c"), ("completion", "a"), ("node-added", "n2"), ("node-lost", "n0")]


def test_steps_are_deterministic() -> None:
    problem = Problem(
        gpu_nodes("n0", "n1", "n2"), tuple(Job(f"j{i}", gpu_milli=300 + 100 * (i % 5)) for i in range(12))
    )
    runs = []
    for _ in range(2):
        st, plan = step(ControllerState.initial(problem, config()), 0.0)
        st, plan2 = step(st, 1.0, events=[Event.completion("j0")])
        runs.append((plan.allocation.placements, plan2.allocation.placements))
    assert runs[0] == runs[1]


def test_round_robin_rotates_the_queue_by_the_controllers_step():
    def first_started(order: str) -> str:
        cfg = ControllerConfig.of(method="best-fit", order=order, drift=DriftConfig(min_interval=0.0, node_high=None))
        state = ControllerState.initial(Problem(gpu_nodes("n"), ()), cfg)
        state, _ = step(state, 0.0, None, [])  # one round goes by with nothing to do
        jobs = [Job(n, gpus=1, arrival=float(i)) for i, n in enumerate("ab")]
        state, plan = step(state, 2.0, None, [Event.arrival(j) for j in jobs])
        return next(a.job for a in plan.actions if a.kind is ActionKind.START)

    assert first_started("fcfs") == "a"
    assert first_started("round-robin") == "b"  # round 1: the queue starts at its second job


def test_admissions_use_the_exact_method_only_when_admit_exact_is_on(engines) -> None:  # type: ignore[no-untyped-def]
    seen: list[SolveOptions] = []

    def spy(problem: Problem, options: SolveOptions) -> Allocation:
        seen.append(options)
        return solve_mod.solve(problem, "best-fit").replace(method="spy")

    engines("spy", spy)
    nodes = gpu_nodes("n0", "n1")
    for admit_exact, solves in ((False, 1), (True, 2)):
        seen.clear()
        cfg = config(method="spy", admit_exact=admit_exact, warm_start="fgd", fragmentation_guide=0.05)
        st, _ = step(ControllerState.initial(Problem(nodes, (Job("a", gpus=1),)), cfg), 0.0)  # initial re-solve
        st, plan = step(st, 1.0, events=[Event.arrival(Job("b", gpus=1, arrival=1.0))])  # an admission
        assert plan.trigger is not None and plan.trigger.kind == "admit"
        assert [a.job for a in plan.starts] == ["b"]
        assert plan.method == ("spy" if admit_exact else "best-fit")
        assert len(seen) == solves
        assert all(o.warm_start == "fgd" and o.fragmentation_guide == 0.05 for o in seen)
        valid(st)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fragmentation_guide", -1),
        ("fragmentation_guide", "x"),
        ("admit_exact", 1),
        ("warm_start", ""),
        ("warm_start", "cpsat"),
        ("method", "cpsta"),
        ("fallback", ""),
        ("order", "lifo"),
        ("max_window", 0),
    ],
)
def test_bad_controller_knobs_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ProblemError, match=field):
        ControllerConfig.of(**{field: value})


# A selector: the step asks it how to act, at the steps that have something to decide ------------


class Recorder:
    """A selector that records when it is asked and answers with a fixed choice."""

    def __init__(self, answer: object = None) -> None:
        self.answer = answer
        self.asked: list[tuple[float, tuple[str, ...]]] = []

    def choose(self, state: ControllerState, now: float) -> object:
        self.asked.append((now, state.queue))
        return self.answer


def test_step_is_prepare_then_act() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1, arrival=5), Job("c", gpus=1)))
    st0 = ControllerState.initial(problem, config())
    st1, plan1 = step(st0, 10.0)
    st2, plan2 = act(prepare(st0, 10.0))
    assert plan1.actions == plan2.actions and st1.queue == st2.queue and st1.steps == st2.steps == 1


def test_a_selector_is_asked_only_when_the_step_has_something_to_decide() -> None:
    problem = Problem(gpu_nodes("n0"), (Job("a", gpus=1),))
    chooser = Recorder()
    st, _ = step(ControllerState.initial(problem, config(selector=chooser)), 0.0)
    assert [q for _, q in chooser.asked] == [("a",)]  # the first step: a waits
    st, _ = step(st, 1.0)  # nothing waits, nothing changed
    st, _ = step(st, 2.0, events=[Event.arrival(Job("b", gpus=1, arrival=2.0))])  # b cannot fit yet
    assert len(chooser.asked) == 1
    st, plan = step(st, 3.0, events=[Event.completion("a")])  # room for b
    assert chooser.asked[-1] == (3.0, ("b",))
    assert [a.job for a in plan.starts] == ["b"]


def test_a_chosen_configuration_acts_for_one_step_and_the_state_keeps_its_own() -> None:
    nodes = gpu_nodes("n0", "n1")
    jobs = (Job("long", gpus=1, duration=100.0), Job("short", gpus=1, arrival=1.0, duration=1.0))
    problem = Problem(nodes[:1], jobs)
    sjf = config(order="sjf")
    chooser = Recorder(sjf)
    own = config(selector=chooser)
    st, plan = step(ControllerState.initial(problem, own), 2.0)
    assert [a.job for a in plan.starts] == ["short"]  # SJF chose; FCFS would start "long"
    assert st.config is own


def test_a_proposed_allocation_is_verified_and_committed() -> None:
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1)))
    proposal = Allocation(
        (Placement("b", 0, "n1", (0,), 1000),), (Unplaced("a", "not chosen by the test"),), method="picker"
    )
    st, plan = step(ControllerState.initial(problem, config(selector=Recorder(proposal))), 0.0)
    assert [a.job for a in plan.starts] == ["b"] and plan.method == "picker"
    assert st.queue == ("a",)
    valid(st)
    bad = Allocation((Placement("a", 0, "n0", (0,), 1000), Placement("b", 0, "n0", (0,), 1000)), method="picker")
    with pytest.raises(SolverError, match="invalid allocation from picker"):
        step(ControllerState.initial(problem, config(selector=Recorder(bad))), 0.0)


def test_a_selector_without_choose_is_refused() -> None:
    with pytest.raises(ProblemError, match="selector"):
        config(selector=object())


def test_a_resolve_keeps_back_from_its_solver_what_the_work_after_the_last_solver_took(engines) -> None:  # type: ignore[no-untyped-def]
    """The step's budget covers the whole step: the solver gets the budget less 1.5x the seconds the
    last re-solve spent after its solver (capping, committing), and the step records the new figure."""
    from optalloc import heuristics

    limits: list[float | None] = []

    def timed(problem: Problem, options: SolveOptions) -> Allocation:
        limits.append(options.time_limit)
        return heuristics.allocate(problem, rule="best-fit").replace(method="timed")

    engines("timed", timed)
    problem = Problem(gpu_nodes("n0", "n1"), (Job("a", gpus=1), Job("b", gpus=1)))
    st = dataclasses.replace(ControllerState.initial(problem, config(method="timed", budget=2.0)), after_solve=0.4)
    st, plan = step(st, 0.0)
    assert plan.method == "timed"
    assert limits and limits[0] is not None and limits[0] <= 2.0 - 1.5 * 0.4
    assert 0.0 < st.after_solve < 0.4
