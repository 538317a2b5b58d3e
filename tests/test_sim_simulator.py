"""The simulator: event order, determinism, verified allocations for every policy, restart penalty,
node failures, heterogeneous runtimes, ticks and stopping early."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator

import numpy as np
import pytest

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, Status, Unplaced
from optalloc.adaptive import ControllerConfig, DriftConfig, HorizonConfig
from optalloc.core.options import SolveOptions
from optalloc.sim import GROUPS, FailureModel, Policy, Scenario, SimConfig, compare, policies, policy, simulate
from optalloc.solve import Method

solve_mod = importlib.import_module("optalloc.solve")  # the module (optalloc.solve is also the function)


def node(name: str, gpus: int = 1, model: str = "A") -> Node:
    return Node(name, cpu=16000, memory=65536, gpus=gpus, gpu_model=model)


def scenario(nodes: tuple[Node, ...], jobs: tuple[Job, ...]) -> Scenario:
    return Scenario.from_problem(Problem(nodes, jobs), "tiny")


FCFS = policy("fcfs+best-fit")
QUIET = SimConfig(tick=0.0)  # no ticks: steps at events only


def test_capacity_freed_at_t_serves_a_job_arriving_at_t() -> None:
    sc = scenario((node("n0"),), (Job("a", gpus=1, duration=10.0), Job("b", gpus=1, arrival=10.0, duration=5.0)))
    r = simulate(sc, FCFS, QUIET)
    assert r.jobs.first_start.tolist() == [0.0, 10.0]  # completions are handled before arrivals
    assert r.jobs.finish.tolist() == [10.0, 15.0]
    assert r.metrics.avg_queueing_delay == 0.0


def test_a_job_waits_for_capacity_and_its_queueing_delay_is_counted() -> None:
    jobs = (Job("a", gpus=1, duration=100.0), Job("b", gpus=1, arrival=10.0, duration=50.0))
    r = simulate(scenario((node("n0"),), jobs), FCFS, QUIET)
    assert r.jobs.first_start.tolist() == [0.0, 100.0]
    assert r.jobs.jct.tolist() == [100.0, 140.0]
    assert r.metrics.makespan == 150.0
    assert r.metrics.waiting_ratio == pytest.approx((90 / 150) / (150 / 150))  # b waits 90 of 150 s


def test_sjf_runs_the_short_job_first() -> None:
    jobs = (
        Job("blocker", gpus=1, duration=10.0),
        Job("long", gpus=1, arrival=1.0, duration=100.0),
        Job("short", gpus=1, arrival=2.0, duration=1.0),
    )
    sc = scenario((node("n0"),), jobs)
    fcfs, sjf = compare(sc, policies(["fcfs+best-fit", "sjf+best-fit"]), QUIET)
    assert fcfs.jobs.first_start.tolist() == [0.0, 10.0, 110.0]
    assert sjf.jobs.first_start.tolist() == [0.0, 11.0, 10.0]
    assert sjf.metrics.avg_jct < fcfs.metrics.avg_jct


def test_a_job_that_fits_no_node_is_rejected_and_counted_unplaceable() -> None:
    jobs = (Job("huge", gpus=4, duration=10.0), Job("ok", gpus=1, arrival=1.0, duration=10.0))
    r = simulate(scenario((node("n0", gpus=2),), jobs), FCFS, QUIET)
    assert r.jobs.rejected.tolist() == [True, False]
    assert r.metrics.unplaceable == 1 and r.metrics.rejected == 1
    assert r.metrics.completion_rate == pytest.approx(0.5)


def test_runtime_depends_on_the_gpu_model_the_job_lands_on() -> None:
    nodes = (node("fast", model="v100"), node("slow", model="k80"))
    jobs = (Job("a", gpus=1, duration=10.0), Job("b", gpus=1, duration=10.0))
    base = Scenario.from_problem(Problem(nodes, jobs))
    sc = Scenario(
        "hetero", base.nodes, base.jobs, np.array([[10.0, 40.0], [10.0, 40.0]]), ("v100", "k80")
    )  # 4x slower on k80
    r = simulate(sc, FCFS, QUIET)
    assert sorted(r.jobs.finish.tolist()) == [10.0, 40.0]


def two_node_outage(keep_progress: bool = True, penalty: float = 30.0, repair: float = 1000.0) -> SimConfig:
    return SimConfig(
        tick=0.0,
        restart_penalty=penalty,
        keep_progress=keep_progress,
        failures=FailureModel(outages=(("n0", 40.0, repair),)),
    )


def test_a_lost_node_sends_its_job_back_and_the_restart_pays_the_penalty() -> None:
    sc = scenario((node("n0"), node("n1")), (Job("a", gpus=1, duration=100.0),))
    r = simulate(sc, FCFS, two_node_outage())
    # runs on n0 from 0 to 40 (40% done), restarts on n1 at 40, 30 s penalty, 60 s of work left
    assert r.jobs.finish.tolist() == [pytest.approx(130.0)]
    assert r.jobs.failures.tolist() == [1]
    assert r.jobs.preemptions.tolist() == [0]  # a failure is not the policy's preemption
    assert r.counters.failures == 1


def test_progress_is_lost_when_jobs_do_not_checkpoint() -> None:
    sc = scenario((node("n0"), node("n1")), (Job("a", gpus=1, duration=100.0),))
    r = simulate(sc, FCFS, two_node_outage(keep_progress=False))
    assert r.jobs.finish.tolist() == [pytest.approx(40.0 + 30.0 + 100.0)]


def test_a_job_waits_in_the_queue_until_its_only_node_is_repaired() -> None:
    sc = scenario((node("n0"),), (Job("a", gpus=1, duration=100.0),))
    r = simulate(sc, FCFS, two_node_outage(repair=50.0, penalty=10.0))
    assert r.jobs.finish.tolist() == [pytest.approx(90.0 + 10.0 + 60.0)]
    tl = r.timeline
    waiting_at_60 = tl.waiting[np.searchsorted(tl.time, 60.0, side="right") - 1]
    assert waiting_at_60 == 1
    assert tl.capacity[np.searchsorted(tl.time, 60.0, side="right") - 1, 0] == 0  # the node is down


@pytest.fixture
def mover(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A test engine that moves every running job to the other node (n0 <-> n1) and places new ones."""
    solve_mod.methods()

    def run(problem: Problem, options: SolveOptions) -> Allocation:
        other = {"n0": "n1", "n1": "n0"}
        current = problem.current.by_job() if problem.current is not None else {}
        placements: list[Placement] = []
        used = set()
        for name, ps in current.items():
            target = other[ps[0].node]
            placements.append(Placement(name, 0, target, (0,), 1000))
            used.add(target)
        unplaced = []
        for job in problem.jobs:
            if job.name in current:
                continue
            free = [n for n in ("n0", "n1") if n not in used]
            if free:
                placements.append(Placement(job.name, 0, free[0], (0,), 1000))
                used.add(free[0])
            else:
                unplaced.append(Unplaced(job.name, "insufficient capacity"))
        return Allocation(tuple(placements), tuple(unplaced), method="mover", status=Status.FEASIBLE)

    monkeypatch.setitem(solve_mod._REGISTRY, "mover", Method("mover", run, "exact", "test engine"))
    yield "mover"


def test_a_migration_restarts_the_job_with_the_penalty(mover: str) -> None:
    drift = DriftConfig(arrivals=1, arrival_gpu_milli=1, min_interval=0.0)
    cfg = ControllerConfig(method=mover, allow_migration=True, max_migrations=5, drift=drift, admit=False)
    jobs = (Job("a", gpus=1, duration=100.0), Job("b", gpus=1, arrival=20.0, duration=10.0))
    r = simulate(
        scenario((node("n0"), node("n1")), jobs), Policy("mover", cfg), SimConfig(tick=0.0, restart_penalty=5.0)
    )
    # a: 20 s on n0 (20%), moved to n1 at t=20 when b arrives, 5 s penalty, 80 s left
    assert r.jobs.migrations.tolist() == [1, 0]
    assert r.jobs.finish[0] == pytest.approx(20.0 + 5.0 + 80.0)
    assert r.metrics.migrations == 1


def small_mix(seed: int = 0, count: int = 30) -> Scenario:
    """Whole-GPU, multi-GPU, shared and CPU-only jobs arriving faster than three nodes can serve them."""
    rng = np.random.default_rng(seed)
    nodes = (node("a0", gpus=4), node("a1", gpus=4), node("b0", gpus=2, model="B"))
    jobs = []
    for i in range(count):
        kind = rng.integers(4)
        gpus = int(rng.choice([1, 2, 4])) if kind == 0 else (1 if kind == 1 else 0)
        share = int(rng.choice([250, 500, 700])) if kind == 2 else 0
        jobs.append(
            Job(
                f"j{i:02d}",
                cpu=int(rng.integers(1, 4)) * 1000,
                memory=4096,
                gpus=gpus,
                gpu_milli=share,
                arrival=float(np.round(rng.uniform(0, 600), 1)),
                duration=float(np.round(rng.uniform(100, 2000), 1)),
            )
        )
    return Scenario.from_problem(Problem(nodes, tuple(jobs)), "mix")


@pytest.mark.parametrize("name", GROUPS["all"])
def test_every_allocation_a_policy_commits_passes_verify(name: str) -> None:
    sc = small_mix()
    p = policy(name, budget=0.1, horizon=HorizonConfig(horizon=3600.0, slots=8, time_limit=0.05), workers=1)
    r = simulate(sc, p, SimConfig(tick=120.0, verify=True))  # verify=True raises on any violation
    assert r.metrics.finished + r.metrics.rejected == len(sc.jobs)


@pytest.mark.parametrize("name", ["fcfs+best-fit", "sjf+best-fit", "ljf+first-fit", "priority+dot-product"])
def test_the_direct_engine_takes_the_controllers_decisions(name: str) -> None:
    sc = small_mix(seed=7, count=60)
    by_controller = simulate(sc, policy(name), SimConfig(tick=60.0, verify=True))
    direct = simulate(sc, policy(name), SimConfig(tick=60.0, verify=True, engine="direct"))
    assert by_controller.metrics.avg_queueing_delay > 0  # a queue builds up: the order matters
    assert np.array_equal(by_controller.jobs.first_start, direct.jobs.first_start, equal_nan=True)
    assert np.array_equal(by_controller.jobs.finish, direct.jobs.finish, equal_nan=True)
    assert np.array_equal(by_controller.timeline.allocated, direct.timeline.allocated)


def test_the_direct_engine_handles_node_failures_and_refuses_exact_policies() -> None:
    sc = scenario((node("n0"), node("n1")), (Job("a", gpus=1, duration=100.0),))
    r = simulate(sc, FCFS, SimConfig(tick=0.0, engine="direct", verify=True, failures=two_node_outage().failures))
    assert r.jobs.finish.tolist() == [pytest.approx(130.0)] and r.jobs.failures.tolist() == [1]
    with pytest.raises(ProblemError, match="engine"):
        simulate(sc, policy("rolling-horizon"), SimConfig(engine="direct"))


def test_same_seed_same_run_and_the_seed_moves_only_the_usage() -> None:
    sc = small_mix(seed=3)
    cfg = SimConfig(tick=60.0, seed=5)
    a = simulate(sc, FCFS, cfg)
    b = simulate(sc, FCFS, cfg)
    c = simulate(sc, FCFS, SimConfig(tick=60.0, seed=6))
    for x, y in ((a, b), (a, c)):
        assert np.array_equal(x.jobs.finish, y.jobs.finish, equal_nan=True)
        assert np.array_equal(x.timeline.allocated, y.timeline.allocated)
    assert np.array_equal(a.timeline.used, b.timeline.used)
    assert not np.array_equal(a.timeline.used, c.timeline.used)


def test_observed_usage_is_below_the_request_so_the_controller_sees_drift() -> None:
    sc = small_mix()
    typical = simulate(sc, FCFS, SimConfig(tick=60.0, usage="typical"))
    exact = simulate(sc, FCFS, SimConfig(tick=60.0, usage="exact"))
    assert typical.metrics.gpu_utilisation < 0.8 * typical.metrics.gpu_allocation
    assert exact.metrics.gpu_utilisation == pytest.approx(exact.metrics.gpu_allocation)


def test_ticks_are_counted_and_skipped_while_the_cluster_is_idle() -> None:
    jobs = (Job("a", gpus=1, duration=100.0), Job("b", gpus=1, arrival=10_000.0, duration=100.0))
    r = simulate(scenario((node("n0"),), jobs), FCFS, SimConfig(tick=10.0))
    # busy [0, 100] and [10000, 10100]: about 10 ticks each, none in between
    assert 18 <= r.counters.ticks <= 22
    assert r.counters.events == r.counters.arrivals + r.counters.completions + r.counters.ticks


def test_without_react_the_controller_decides_only_at_ticks() -> None:
    jobs = (Job("a", gpus=1, arrival=5.0, duration=100.0), Job("b", gpus=1, arrival=7.0, duration=10.0))
    r = simulate(scenario((node("n0"), node("n1")), jobs), FCFS, SimConfig(tick=60.0, react=False))
    assert r.jobs.first_start.tolist() == [65.0, 65.0]  # the first tick after the arrivals (5 + 60)


def test_until_stops_the_run_and_leaves_jobs_unfinished() -> None:
    jobs = (Job("a", gpus=1, duration=100.0), Job("b", gpus=1, arrival=1.0, duration=10.0))
    r = simulate(scenario((node("n0"),), jobs), FCFS, SimConfig(tick=0.0, until=50.0))
    assert r.metrics.finished == 0 and r.metrics.unfinished == 2
    assert r.metrics.end == 50.0 and r.timeline.end == 50.0
    assert r.metrics.gpu_allocation == pytest.approx(1.0)


def test_progress_reports_reach_every_job() -> None:
    seen = []
    sc = small_mix()
    simulate(sc, FCFS, SimConfig(tick=60.0), progress=seen.append)
    assert seen and seen[-1].done == seen[-1].total == len(sc.jobs)
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_bad_settings_are_refused_with_the_field_named() -> None:
    with pytest.raises(ProblemError, match="tick"):
        SimConfig(tick=-1)
    with pytest.raises(ProblemError, match="react"):
        SimConfig(tick=0, react=False)
    with pytest.raises(ProblemError, match="usage"):
        SimConfig(usage="bogus")
    with pytest.raises(ProblemError, match=r"failures\.mtbf"):
        FailureModel(mtbf=0)
    with pytest.raises(ProblemError, match=r"failures.outages\[0\]"):
        simulate(scenario((node("n0"),), (Job("a", gpus=1, duration=1.0),)), FCFS, two_node_outage_on("zz"))
    with pytest.raises(ProblemError, match="policy"):
        policy("fcfs+nonsense")
    with pytest.raises(ProblemError, match="duration"):
        Scenario.from_problem(Problem((node("n0"),), (Job("a", gpus=1),)))
    assert math.isfinite(policy("horizon-model", durations=[10.0, 20.0]).config.horizon.horizon)  # type: ignore[union-attr]


def two_node_outage_on(name: str) -> SimConfig:
    return SimConfig(tick=0.0, failures=FailureModel(outages=((name, 1.0, 1.0),)))


def test_fallbacks_are_counted_in_the_result_and_the_report(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A method without an answer: the heuristic places the jobs, and the run says how often and why."""
    from optalloc.sim import report_table, write_report

    solve_mod.methods()

    def never(problem: Problem, options: SolveOptions) -> Allocation:
        left = tuple(Unplaced(j.name, "time limit") for j in problem.jobs if j.name not in problem.running_jobs)
        return Allocation(problem.current.placements if problem.current else (), left, status=Status.UNKNOWN)

    monkeypatch.setitem(solve_mod._REGISTRY, "never", Method("never", never, "exact", "test engine"))
    cfg = ControllerConfig(method="never", drift=DriftConfig(arrivals=1, min_interval=0.0))
    jobs = (Job("a", gpus=1, duration=10.0), Job("b", gpus=1, arrival=1.0, duration=10.0))
    r = simulate(scenario((node("n0"), node("n1")), jobs), Policy("never", cfg), QUIET)
    assert r.metrics.finished == 2
    assert r.counters.fallbacks == r.metrics.fallbacks >= 1
    assert r.counters.fallback_reasons == {"no-answer": r.counters.fallbacks}
    assert "fallbacks" in report_table([r]).splitlines()[0]
    write_report(tmp_path, scenario((node("n0"), node("n1")), jobs), [r], QUIET, plots=False)
    assert "Fallbacks by reason: never no-answer" in (tmp_path / "report.md").read_text()
    assert "fallbacks" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_an_engine_bug_stops_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict: an exception of an engine is not turned into a heuristic answer."""
    solve_mod.methods()

    def broken(problem: Problem, options: SolveOptions) -> Allocation:
        raise ZeroDivisionError("engine bug")

    monkeypatch.setitem(solve_mod._REGISTRY, "broken", Method("broken", broken, "exact", "test engine"))
    sc = scenario((node("n0"),), (Job("a", gpus=1, duration=10.0),))
    with pytest.raises(ZeroDivisionError, match="engine bug"):
        simulate(sc, Policy("broken", ControllerConfig(method="broken")), QUIET)
