"""The anytime engine's parts: the early bound, the neighbourhood search, tiny budgets, the portfolio."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from optalloc import Problem, Status, solve, verify
from optalloc.core import Reason
from optalloc.core.budget import Budget, Progress
from optalloc.core.options import SolveOptions
from optalloc.io import synthetic
from optalloc.models.classes import compress
from optalloc.models.lns import improve
from optalloc.models.lp_bound import capacity_bound, quick_bound
from optalloc.solve import methods
from optalloc.testing import brute_force, objective
from optalloc.testing import strategies as ost


class _FakeChild:
    """A heuristic's child process as ``best_heuristic`` sees it (``strong_tail.Beside``), recording in
    ``events`` that it was ended (``"{name} ended"``) or collected (``"{name} collected"``, no answer)."""

    beside_program, to_deadline = False, True

    def __init__(self, events: list[str], name: str) -> None:
        self.events, self.name = events, name

    def close(self) -> None:
        self.events.append(f"{self.name} ended")

    def collect(self, budget: Budget) -> list[object]:
        self.events.append(f"{self.name} collected")
        return []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ost.problems(min_jobs=1, max_jobs=5, max_nodes=3, with_running=True))
def test_the_early_bound_is_never_below_the_optimum(problem):
    bound = quick_bound(problem)
    optimum = brute_force(problem, keep_running=True).objective
    assert optimum is not None
    assert bound is None or bound >= optimum


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ost.problems(min_jobs=1, max_jobs=5, max_nodes=3, with_running=True))
def test_the_value_bound_is_never_below_the_pooled_bound_nor_the_optimum(problem):
    from optalloc.models.lp_bound import value_bound

    bound, pooled = value_bound(problem), quick_bound(problem)
    optimum = brute_force(problem, keep_running=True).objective
    assert optimum is not None
    assert bound is None or (bound >= optimum and (pooled is None or bound >= pooled))


def test_the_early_bound_equals_the_pooled_bound_of_the_compressed_problem():
    problem = synthetic.openb_like(nodes=200, jobs=2000, seed=2)
    assert quick_bound(problem) == capacity_bound(compress(problem))


def test_a_half_second_budget_has_a_bound_even_when_the_verification_keeps_most_of_it(monkeypatch):
    """``early_bound_from`` is about the caller's time limit: at 20,000 nodes x 150,000 jobs the reserve
    for verifying left 0.36 of 0.5 s, below it, and the answer had no bound."""
    import optalloc.anytime as anytime

    monkeypatch.setattr(anytime, "verify_reserve", lambda *args: 0.3)
    problem = synthetic.openb_like(nodes=50, jobs=400, seed=4)
    assert SolveOptions().portfolio.early_bound_from == 0.4
    for method in ("auto", "cpsat"):
        answer = solve(problem, method, time_limit=0.5)
        assert verify(problem, answer) == [] and answer.bound is not None and answer.gap is not None
    # Below it, no time is spent on it (the heuristics' floor comes first).
    import optalloc.models.lp_bound as lp_bound

    calls: list[int] = []
    monkeypatch.setattr(lp_bound, "quick_bound", lambda *args: calls.append(1))
    solve(problem, "auto", time_limit=0.35)
    assert calls == []
    solve(problem, "auto", time_limit=0.45)
    assert calls == [1]
    # Nor when its forecast takes more than a third of the time left (0.15 of the 0.2 s left here).
    from optalloc.core.options import PortfolioConfig

    slow = PortfolioConfig(bound_per_job=0.15 / len(problem.jobs))
    solve(problem, "auto", time_limit=0.5, portfolio=slow)
    assert calls == [1]
    solve(problem, "auto", time_limit=0.5, portfolio=PortfolioConfig(bound_per_job=0.05 / len(problem.jobs)))
    assert calls == [1, 1]
    # In its place, the jobs' total value (cheaper, weaker) when that one's forecast fits.
    from optalloc.models.lp_bound import value_bound

    neither = PortfolioConfig(bound_per_job=0.15 / len(problem.jobs), value_bound_per_job=1.0)
    for config, first in ((slow, value_bound(problem)), (neither, None)):
        events: list[Progress] = []
        solve(problem, "auto", time_limit=0.5, portfolio=config, on_progress=events.append)
        seen = [(e.engine, e.bound) for e in events]
        assert calls == [1, 1]
        assert (seen[0] == ("value", first)) if first is not None else all(engine != "value" for engine, _ in seen)


def test_the_neighbourhood_search_improves_a_poor_answer_and_keeps_it_valid():
    """A GPU stranded on a node out of CPU: moving one job lets the job left out in (an exact pairing)."""
    from optalloc import Allocation, Job, Node, Placement, Status, Unplaced

    nodes = (Node("n0", cpu=8000, memory=8192, gpus=2), Node("n1", cpu=2000, memory=8192, gpus=2))
    jobs = (
        Job("a", cpu=6000, gpus=1),
        Job("b", cpu=1000, gpus=1),
        Job("c", cpu=1000, gpus=1),
        Job("d", cpu=1000, gpus=1),
    )
    problem = Problem(nodes, jobs)
    start = Allocation(
        (Placement("b", 0, "n0", (0,), 1000), Placement("c", 0, "n0", (1,), 1000), Placement("d", 0, "n1", (0,), 1000)),
        (Unplaced("a", "insufficient capacity"),),
        method="first-fit",
        status=Status.FEASIBLE,
    )
    start = start.replace(objective=float(objective(problem, start)))
    result = improve(problem, start, SolveOptions(seed=0), Budget(30.0))
    assert result.allocation.placed_jobs == {"a", "b", "c", "d"}
    assert result.allocation.objective == pytest.approx(objective(problem, result.allocation))
    assert verify(problem, result.allocation) == []
    assert result.improved >= 1


def test_the_neighbourhood_search_still_steps_on_a_machine_measured_slow():
    """Each step's sub-budget ends a step's clock seconds from now: with a pace of 3 (a loaded machine)
    and most of the budget left, steps used to find their budget spent before they began."""
    problem = synthetic.openb_like(nodes=60, jobs=700, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    budget = Budget(3.0)
    budget.observe_pace(nominal=0.5, actual=1.5)
    result = improve(problem, start, SolveOptions(seed=0), budget)
    assert result.improved >= 1
    assert verify(problem, result.allocation) == []


def test_the_neighbourhood_search_ends_when_building_a_step_used_up_the_time():
    """The clock passes the deadline between the loop's check and the step's time limit: the search
    ends with the answer it has (a step of 0 s used to be an invalid time limit, a ProblemError)."""
    import itertools

    problem = synthetic.openb_like(nodes=60, jobs=700, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    ticks = itertools.count(0.0, 0.2)  # every reading of the clock 0.2 s later than the one before
    result = improve(problem, start, SolveOptions(seed=0), Budget(0.35, clock=lambda: next(ticks)))
    assert result.improved == 0 and result.allocation.placements == start.placements


def test_the_neighbourhood_search_keeps_back_the_time_to_build_its_answer():
    """A step is started only with the time to build the answer after it (a few microseconds per job):
    with 0.13 s left on 8,000 jobs (0.1 s the least worth a step, 0.05 s to build the answer) there is
    none; a last step ending at the deadline took `auto` at 2 s on the openb default list to 2.1 s."""
    import itertools

    problem = synthetic.openb_like(nodes=300, jobs=8000, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    ticks = itertools.count(0.0, 0.001)  # the clock moves a millisecond a reading
    result = improve(problem, start, SolveOptions(seed=0), Budget(0.13, clock=lambda: next(ticks)))
    assert result.steps == 0 and result.allocation.placements == start.placements


def test_the_neighbourhood_search_never_makes_an_answer_worse():
    problem = synthetic.openb_like(nodes=60, jobs=700, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    result = improve(problem, start, SolveOptions(seed=0), Budget(2.0))
    assert result.allocation.objective >= start.objective
    assert result.allocation.objective == pytest.approx(objective(problem, result.allocation))
    assert verify(problem, result.allocation) == []
    assert result.allocation.placed_jobs | result.allocation.unplaced_jobs == {j.name for j in problem.jobs}


def test_the_neighbourhood_search_in_two_processes_merges_both_halves_into_one_valid_answer():
    """The child searches every other node of each GPU model and streams its improvements; the answer
    has them (nodes of its half changed), is valid, decides every job once, and no process is left."""
    import os

    import numpy as np

    from optalloc.models.lns import _halves

    problem = synthetic.openb_like(nodes=80, jobs=900, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    result = improve(problem, start, SolveOptions(seed=0), Budget(4.0), parallel=True)
    answer = result.allocation
    assert answer.objective > start.objective
    assert answer.objective == pytest.approx(objective(problem, answer))
    assert verify(problem, answer) == []
    names = [j.name for j in problem.jobs]
    assert sorted(answer.placed_jobs | answer.unplaced_jobs) == sorted(names)
    assert not answer.placed_jobs & answer.unplaced_jobs
    half = _halves(problem)
    ours, theirs = np.bincount(half)
    assert abs(ours - theirs) <= len(set(problem.node_model.tolist()))  # every other node of each model
    child_nodes = {problem.nodes[n].name for n in np.flatnonzero(half == 1)}
    before = {p for p in start.placements if p.node in child_nodes}
    after = {p for p in answer.placements if p.node in child_nodes}
    assert before != after  # the child's improvements reached the answer
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_the_neighbourhood_search_and_the_polish_work_alone_when_no_process_can_be_forked(monkeypatch):
    from optalloc.models import forked
    from optalloc.models.decode import start as start_decoding

    def no_fork(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(forked, "Stream", no_fork)
    problem = synthetic.openb_like(nodes=60, jobs=700, seed=3)
    start = solve(problem, "first-fit", order="ljf")
    result = improve(problem, start, SolveOptions(seed=0), Budget(2.0), parallel=True)
    assert result.improved >= 1 and verify(problem, result.allocation) == []

    from optalloc.models import build, compress
    from optalloc.models.lp_bound import relax
    from optalloc.models.rounding import round_solution

    form = build(compress(synthetic.openb_like(nodes=300, jobs=2400, seed=11), group_nodes=True))
    lp = relax(form.program, form.weights, Budget(30.0), solver="simplex", presolve=True)
    decoding = start_decoding(form, round_solution(form, lp.values), Budget(30.0))
    before = decoding.lost_value
    decoding.polish(Budget(30.0), parallel=True)
    assert decoding.lost_value <= before


def test_the_neighbourhood_search_leaves_running_jobs_where_they_run():
    base = synthetic.openb_like(nodes=40, jobs=400, seed=5)
    first = solve(base, "best-fit")
    running = first.replace(placements=first.placements[: len(first.placements) // 2])
    problem = base.replace(current=running)
    start = solve(problem, "best-fit")
    result = improve(problem, start, SolveOptions(seed=0), Budget(2.0))
    kept = set(result.allocation.placements)
    assert all(p in kept for p in running.placements)
    assert verify(problem, result.allocation) == []


@pytest.mark.parametrize("method", [m.name for m in methods()])
def test_a_tiny_budget_gives_a_valid_complete_answer_with_an_honest_status(method: str):
    problem = synthetic.openb_like(nodes=300, jobs=6000, seed=6)
    answer = solve(problem, method, time_limit=0.02)
    assert verify(problem, answer) == []
    assert answer.placed_jobs | answer.unplaced_jobs == {j.name for j in problem.jobs}
    undecided = [u for u in answer.unplaced if u.reason == Reason.TIME_LIMIT]
    if undecided:
        assert answer.status is not Status.OPTIMAL
    if answer.status is Status.OPTIMAL:
        assert answer.bound is not None and answer.objective is not None and answer.objective >= answer.bound


def test_auto_is_never_worse_than_the_heuristics_it_runs():
    problem = synthetic.openb_like(nodes=80, jobs=900, seed=7)
    answer = solve(problem, "auto", time_limit=5)
    for rule in ("best-fit", "fgd-plus"):
        assert answer.objective >= solve(problem, rule).objective
    assert answer.bound is not None and answer.gap is not None


def test_a_plan_from_scratch_starts_with_the_scratch_rule_and_an_online_solve_with_the_warm_start():
    """cpsat with no time for its program answers with its first heuristic: the scratch rule (first-fit)
    for a plan from scratch, the warm-start rule once something runs."""
    from optalloc import MethodUnavailable
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=40, jobs=300, seed=2)
    no_program = PortfolioConfig(setup_per_job=1.0)  # the program would need minutes
    scratch = solve(problem, "cpsat", time_limit=5, portfolio=no_program)
    assert scratch.stats["rule"] == "first-fit"
    running = solve(problem, "best-fit")
    online = problem.replace(current=running.replace(placements=running.placements[:50]))
    steady = solve(online, "cpsat", time_limit=5, portfolio=no_program, warm_start="best-fit")
    assert steady.stats["rule"] == "best-fit"
    with pytest.raises(MethodUnavailable, match="scratch_rule"):
        solve(problem, "auto", time_limit=1, portfolio=PortfolioConfig(scratch_rule="cpsat"))


def test_a_budget_reaches_every_stage_of_auto():
    """A budget too short for the program: auto answers from its heuristics, with the early bound, and
    says the program had no time (the setup estimate, not the clock alone, decides: load-independent)."""
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=3000, seed=8)
    slow_setup = PortfolioConfig(setup_per_job=1.0)  # the program would need an hour
    answer = solve(problem, "auto", time_limit=5, portfolio=slow_setup)
    assert answer.bound is not None and answer.gap is not None
    assert answer.stats.get("portfolio") == "no time left for the program"


def test_a_long_budget_builds_the_program_before_the_heuristics_and_leaves_no_process_behind(monkeypatch):
    """With room for the program twice over, auto builds it (and, with a second CPU, starts its second LP
    vertex in a child) before the first heuristic runs; the answer is valid and no child outlives it."""
    import os

    from optalloc import anytime
    from optalloc.core.cpus import usable_cpus
    from optalloc.models import exact

    order: list[str] = []
    prepared: list[exact.Prepared] = []
    real_prepare, real_best = exact.prepare, anytime.best_heuristic

    def spy_prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        order.append("program")
        prepared.append(real_prepare(*args, **kwargs))
        if prepared[-1].solving:
            order.append("second vertex")
        return prepared[-1]

    def spy_best(*args, **kwargs):  # type: ignore[no-untyped-def]
        order.append("heuristics")
        return real_best(*args, **kwargs)

    monkeypatch.setattr(exact, "prepare", spy_prepare)
    monkeypatch.setattr(anytime, "best_heuristic", spy_best)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    answer = solve(problem, "auto", time_limit=8)
    assert order[0] == "program" and "heuristics" in order
    if usable_cpus() > 1:
        assert order[:2] == ["program", "second vertex"]
    assert verify(problem, answer) == [] and answer.gap is not None
    assert answer.objective >= solve(problem, "fgd-plus").objective - 1e-9
    assert prepared[0].take_child() is None  # the solve took it over (or ended it)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("spare_cpu", [True, False])
def test_with_the_program_built_early_the_strong_rule_runs_beside_it_in_a_child(monkeypatch, spare_cpu):
    """When the program is built before the heuristics and runs over node types, the strong rule run
    whole goes to a child process (with a second CPU) while the program solves and decodes; its answer is
    collected before the best is chosen, so auto stays >= fgd-plus; without a second CPU it runs in turn.
    No child outlives the solve."""
    import os

    from optalloc.anytime import strong_tail
    from optalloc.core import cpus

    monkeypatch.setattr(cpus, "usable_cpus", lambda: 2 if spare_cpu else 1)
    monkeypatch.setattr("optalloc.models.exact.SPARE_CPU_PACE", 1e9)  # the suite's own load does not count
    started: list[object] = []
    real = strong_tail.strong_beside_program

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr("optalloc.anytime.portfolio.strong_beside_program", spy)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    answer = solve(problem, "auto", time_limit=8)
    assert len(started) == 1 and (started[0] is not None) == spare_cpu
    assert "fgd-plus/fcfs" in answer.stats["portfolio_candidates"]
    assert verify(problem, answer) == [] and answer.gap is not None
    assert answer.objective >= solve(problem, "fgd-plus").objective - 1e-9
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_solve_that_fails_after_preparing_the_program_ends_its_child(monkeypatch):
    import os

    from optalloc import anytime

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a heuristic broke")

    monkeypatch.setattr(anytime, "best_heuristic", broken)
    with pytest.raises(RuntimeError, match="a heuristic broke"):
        solve(synthetic.openb_like(nodes=300, jobs=2400, seed=11), "auto", time_limit=8)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_short_and_deterministic_budgets_run_the_heuristics_first():
    from optalloc.anytime import prepare_early

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    assert prepare_early(problem, SolveOptions(), Budget(0.3)) is None
    assert prepare_early(problem, SolveOptions(deterministic=True), Budget(8.0)) is None
    assert prepare_early(problem, SolveOptions(), Budget(None)) is None


def test_without_time_for_the_strong_rule_whole_nor_the_program_it_places_the_tail_of_the_queue():
    """auto's portfolio, when the strong rule cannot place every job in time and the program cannot run:
    first-fit places the head of the queue and fgd-plus the rest (beside the cheap rules in a child
    process when a second CPU is free); its answer is a candidate, complete, and no child is left."""
    import os

    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    # No program (an hour of setup), the strong rule estimated at 1,000 first-fit runs, any tail worth it.
    config = PortfolioConfig(setup_per_job=1.0, strong_cost=1000.0, strong_tail=0.0)
    answer = solve(problem, "auto", time_limit=3, portfolio=config)
    assert verify(problem, answer) == []
    assert "first-fit+fgd-plus/fcfs" in answer.stats["portfolio_candidates"]
    assert not [u for u in answer.unplaced if u.reason == Reason.TIME_LIMIT]
    assert answer.objective >= solve(problem, "first-fit").objective
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_without_time_for_the_program_the_strong_rule_starts_before_the_first_rule_and_stops_if_it_fits(
    monkeypatch,
):
    """When the unloaded forecast of the first rule's run leaves time for neither the program nor the
    strong rule whole, the strong rule's child starts before the first rule runs (it would lose that
    run's time otherwise), forecasting the first run from ``pace_jobs_per_second``; when the first run
    shows that the program fits after all, the child is ended and the program runs."""
    from optalloc.core.options import PortfolioConfig

    events: list[str] = []
    forecasts: list[float] = []

    def beside(problem, options, budget, first, *args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("child started")
        forecasts.append(first)
        return _FakeChild(events, "child")

    from optalloc import heuristics

    real_allocate = heuristics.allocate

    def allocate(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append(kwargs.get("rule", "?"))
        return real_allocate(*args, **kwargs)

    monkeypatch.setattr("optalloc.anytime.portfolio.strong_beside", beside)
    monkeypatch.setattr("optalloc.anytime.portfolio._machine_busy", lambda: False)
    monkeypatch.setattr("optalloc.heuristics.allocate", allocate)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    # First-fit forecast at 100 jobs a second (24 s): by the forecast neither fits in 5 s; it runs in
    # milliseconds, and then the program fits.
    config = PortfolioConfig(pace_jobs_per_second=100.0)
    answer = solve(problem, "auto", time_limit=5, portfolio=config)
    assert events[:3] == ["child started", "first-fit", "child ended"]
    assert "child collected" not in events
    assert forecasts == [pytest.approx(24.0)]
    assert answer.stats.get("portfolio") != "no time left for the program" and "candidates" in answer.stats
    assert verify(problem, answer) == []


@pytest.mark.parametrize(("cpus", "load", "busy"), [(2, 0.5, False), (2, 4.9, False), (2, 5.0, True), (4, 5.0, False)])
def test_no_child_starts_before_the_first_run_on_a_busy_machine(monkeypatch, cpus, load, busy):
    """Before any run measured the pace, the load average stands in for it: a child beside the first rule
    needs a load below SPARE_CPU_PACE (2.5) times the usable CPUs."""
    import os

    from optalloc.anytime import portfolio
    from optalloc.core import cpus as cpus_module

    monkeypatch.setattr(cpus_module, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert portfolio._machine_busy() is busy


@pytest.mark.parametrize("spare_cpu", [True, False])
def test_the_strong_rule_on_the_tail_decides_every_job_in_a_child_or_after_the_others(monkeypatch, spare_cpu):
    import os

    from optalloc import anytime
    from optalloc.anytime import strong_tail
    from optalloc.core import cpus
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    options = SolveOptions(portfolio=PortfolioConfig(strong_cost=1000.0, strong_tail=0.0))
    budget = Budget(3.0)
    first = solve(problem, "first-fit").wall_time
    if not spare_cpu:
        monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    beside = strong_tail.strong_beside(
        problem, options, budget, first, "fgd-plus", "fcfs", None, first_rule="first-fit"
    )
    assert (beside is not None) == (cpus.usable_cpus() > 1)
    if beside is None:
        head = strong_tail.strong_head(problem, options, budget, first, rule="first-fit", until=budget.deadline)
        assert head is not None and 0 < head.jobs < len(problem.jobs)
        answers = [anytime.run_heuristic(problem, options, budget, rule="fgd-plus", head=head)]
    else:
        answers = beside.collect(budget)
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)
    (answer,) = answers
    assert answer.method == "first-fit+fgd-plus" and answer.stats["undecided"] == 0
    assert verify(problem, answer) == []


def test_a_heads_probe_reaches_the_strong_rule_in_its_child_process():
    """The strong rule's tail in a forked child times itself as its head says (``Head.probe`` passed on
    to ``allocate``): the child's answer reports the jobs it timed."""
    from optalloc.anytime import strong_tail

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    budget = Budget(20.0)
    head = strong_tail.Head("first-fit", 1200, budget.deadline - 1.0, budget.deadline, per_job=1e-6, probe=60)
    stream = strong_tail._fork(problem, SolveOptions(), "fgd-plus", "fcfs", None, head)
    assert stream is not None
    (answer,) = strong_tail.Beside(stream, "fgd-plus", budget.deadline - 0.5, problem).collect(budget)
    assert answer.stats["probe_jobs"] == 60 and answer.stats["undecided"] == 0
    assert verify(problem, answer) == []


def test_the_strong_tail_hands_back_as_it_goes_not_at_a_time_fixed_at_the_start():
    from optalloc.anytime import strong_tail

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    budget = Budget(3.0)
    head = strong_tail.strong_head(problem, SolveOptions(), budget, 0.05, rule="first-fit", until=budget.deadline)
    assert head is not None and head.deadline == budget.deadline
    # the first rule keeps HURRY_FACTOR times its own time for a fresh start (a share of its whole run) and
    # per job for each job still to decide
    hurry = strong_tail.HURRY_FACTOR
    assert head.until == pytest.approx(budget.deadline - hurry * strong_tail.HAND_BACK_SETUP * 0.05)
    assert head.per_job == pytest.approx(hurry * 0.05 / len(problem.jobs))


@pytest.mark.parametrize(("first", "probed"), [(0.05, False), (0.5, True), (1.0, False)])
def test_the_strong_rule_times_itself_only_when_the_forecast_gives_it_half_the_queue_or_more(first, probed):
    from optalloc.anytime import strong_tail

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    budget = Budget(3.0)
    # 6 runs of the first rule for the strong one, 0.8 of the 3 s for its tail: the whole queue (no head,
    # nothing to size) with a 0.05 s first rule, 80% of it with 0.5 s, 40% with 1 s (its whole is out of
    # reach: a probe would only shorten the tail).
    head = strong_tail.strong_head(problem, SolveOptions(), budget, first, rule="first-fit", until=budget.deadline)
    assert head is not None
    assert head.probe == (int(strong_tail.PROBE_SHARE * len(problem.jobs)) if probed else 0)
    assert (head.jobs > 0) == (first > 0.05)


def test_the_paces_yardstick_grows_with_the_nodes_beyond_pace_nodes():
    """An idle machine read a pace of 1.3 at 10,000 nodes and 1.5 at 20,000 when the yardstick was one
    speed at every size: the simple rules scan more nodes per job on larger clusters."""
    from optalloc.anytime.timing import first_rule_time
    from optalloc.core.options import PortfolioConfig

    config = PortfolioConfig()
    jobs = 1000
    per_job = 1 / config.pace_jobs_per_second
    small = synthetic.openb_like(nodes=300, jobs=jobs, seed=1)
    assert first_rule_time(small, config) == pytest.approx(jobs * per_job)
    assert first_rule_time(small, config, 10) == pytest.approx(10 * per_job)
    nodes = config.pace_nodes + 2000
    large = synthetic.openb_like(nodes=nodes, jobs=jobs, seed=1)
    assert first_rule_time(large, config) == pytest.approx(jobs * per_job * (1 + 2000 * config.pace_per_node))


def test_a_tail_that_is_likely_the_answer_is_sized_on_the_larger_share_of_the_time_left():
    """Alone (no program expected), nothing else needs the second CPU and the hand-back keeps the deadline:
    the tail takes ``strong_fill_alone`` of the time left; beside the program, ``strong_fill``."""
    from optalloc.anytime import strong_tail
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    jobs = len(problem.jobs)
    config = PortfolioConfig(strong_fill=0.5, strong_fill_alone=0.75)
    options = SolveOptions(portfolio=config)
    budget = Budget(3.0, clock=lambda: 0.0)
    first = 1.0  # the strong rule: 6 s for the queue, 2,400 jobs
    for alone, fill in ((False, 0.5), (True, 0.75)):
        head = strong_tail.strong_head(problem, options, budget, first, rule="first-fit", until=3.0, alone=alone)
        assert head is not None and jobs - head.jobs == int(fill * 3.0 / (6.0 / jobs))


def test_the_strong_rule_gets_no_tail_shorter_than_its_share_of_the_queue():
    from optalloc.anytime import strong_tail

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    budget = Budget(0.5)
    # 8 runs of a 10 s first rule: not a fifth of the queue in half a second.
    assert (
        strong_tail.strong_head(problem, SolveOptions(), budget, 10.0, rule="first-fit", until=budget.deadline) is None
    )


def test_a_program_built_before_the_heuristics_is_not_charged_its_build_again():
    """After prepare_early, the time the program still needs is its LP and decoding: on 10,000 nodes the
    build charged twice left 'no time for the program' at 10 s (a regression measured in the benchmark)."""
    from optalloc.anytime import exact_setup
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    config = PortfolioConfig()
    lp = min(config.lp_max, config.lp_per_job * len(problem.jobs))
    assert exact_setup(problem, config, built=True) == pytest.approx(config.min_exact + lp)
    assert exact_setup(problem, config) > exact_setup(problem, config, built=True)


def test_the_program_needs_time_to_spare_only_when_the_strong_rule_would_place_half_the_queue():
    """On programs over node types the program's first answer beats the first rule with the strong rule's
    tail (openb_like at 10,000 nodes and 5 s), not the strong rule run on half the queue or more (the
    openb lists at 1 s): its first answer alone must fit in the first case; in the second, also its
    second vertex's decoding and one heuristic run. Asked before the first run, that run counts too."""
    from optalloc.anytime.timing import exact_setup, first_answer_fits, first_decode
    from optalloc.core.options import PortfolioConfig

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)  # over node types (more than 24 nodes)
    first = 0.1
    program = exact_setup(problem, PortfolioConfig()) + first_decode(problem)
    left = program + 0.01  # the program's first answer fits, with nothing to spare

    def fits(
        strong_cost: float, *, time: float = left, ahead: float = 0.0, insured: bool = False, pace: float | None = None
    ) -> bool:
        options = SolveOptions(portfolio=PortfolioConfig(strong_cost=strong_cost))
        budget = Budget(time, clock=lambda: 0.0)
        return first_answer_fits(problem, options, budget, first, built=False, ahead=ahead, insured=insured, pace=pace)

    half_needs = 2 * left / first  # the strong rule's cost at which half the queue takes the time left
    assert fits(strong_cost=half_needs * 1.1)  # it would place less than half: the first answer is enough
    assert not fits(strong_cost=half_needs * 1.1, pace=1.5)  # not on a machine half as slow again
    assert not fits(strong_cost=half_needs * 0.9)  # half or more: that answer alone is not worth waiting for
    assert fits(strong_cost=half_needs * 0.9, time=left + first + first_decode(problem))
    assert not fits(strong_cost=1000.0, ahead=first)  # before the first run, its time is not there yet
    # The strong rule's tail going on beside the program (insured): its first answer is enough.
    assert fits(strong_cost=half_needs * 0.9, insured=True)
    # Asked before the first run, the strong rule's half starts after it: half the queue taking all but
    # half a first run of the time left, it no longer fits once that run is counted.
    assert fits(strong_cost=2 * (left + first / 2) / first, time=left + first, ahead=first)


def _spied_at_once(monkeypatch, fits, half_the_queue: bool) -> list[bool]:  # type: ignore[no-untyped-def]
    """``_strong_at_once`` with its forecasts given (``fits`` for ``first_answer_fits``, ``half_the_queue`` for
    ``tail_beside_program``), an idle machine, and no child forked: the list of the ``alone`` values it
    would start children with."""
    alone: list[bool] = []
    monkeypatch.setattr(
        "optalloc.anytime.portfolio.strong_beside", lambda *args, **kwargs: alone.append(kwargs["alone"]) or "child"
    )
    monkeypatch.setattr("optalloc.anytime.portfolio._machine_busy", lambda: False)
    monkeypatch.setattr("optalloc.anytime.portfolio.first_answer_fits", fits)
    monkeypatch.setattr("optalloc.anytime.portfolio.tail_beside_program", lambda *args, **kwargs: half_the_queue)
    return alone


@pytest.mark.parametrize(
    ("strong_whole", "program_fits", "surely", "half_the_queue", "insurable", "started"),
    [
        (True, False, False, False, True, False),  # the strong rule whole may fit: decided after the first run
        (False, False, False, False, False, True),  # nothing else fits: the tail is the answer
        (False, True, True, False, True, False),  # the program fits and its first answer beats the tail
        (False, True, False, False, True, True),  # ... on an idle machine only: the tail, in case it does not
        (False, True, True, True, True, True),  # the tail may beat it: it goes on beside the program
        (False, True, False, True, False, False),  # ... unless nothing can go on beside the program
    ],
)
def test_the_strong_rules_tail_starts_before_the_first_rule_only_when_it_may_be_the_best_answer(
    monkeypatch, strong_whole, program_fits, surely, half_the_queue, insurable, started
):
    from optalloc.anytime.portfolio import IDLE_PACE, _strong_at_once
    from optalloc.core.options import PortfolioConfig

    def fits(*args, pace=None, **kwargs):  # type: ignore[no-untyped-def]
        return surely if pace == IDLE_PACE else program_fits

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    # First-fit forecast at 2,400 jobs a second (1 s); the strong rule at 3 or 6 of its runs.
    options = SolveOptions(portfolio=PortfolioConfig(pace_jobs_per_second=2400.0, strong_cost=3 if strong_whole else 6))
    budget = Budget(5.0, clock=lambda: 0.0)
    alone = _spied_at_once(monkeypatch, fits, half_the_queue)
    child = _strong_at_once(problem, options, budget, None, "first-fit", built=False, insurable=insurable)
    assert (child == "child") is started
    # Its tail is sized for being the answer (strong_fill_alone) only when the program is not expected to run.
    assert alone == ([not program_fits] if started else [])


@pytest.mark.parametrize("half_the_queue", [True, False])
def test_a_tail_that_may_go_on_beside_the_program_is_not_sized_as_the_answer(monkeypatch, half_the_queue):
    """The program fits only with the tail's child going on beside it (insured): the child started at once
    shares the machine with the program after the first run, so its tail is sized on ``strong_fill``."""
    from optalloc.anytime.portfolio import _strong_at_once
    from optalloc.core.options import PortfolioConfig

    def fits(*args, pace=None, insured=False, **kwargs):  # type: ignore[no-untyped-def]
        return insured and pace is None

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    options = SolveOptions(portfolio=PortfolioConfig(pace_jobs_per_second=2400.0, strong_cost=6))
    alone = _spied_at_once(monkeypatch, fits, half_the_queue)
    budget = Budget(5.0, clock=lambda: 0.0)
    assert _strong_at_once(problem, options, budget, None, "first-fit", built=False, insurable=True) == "child"
    assert alone == [not half_the_queue]


def test_the_strong_rules_tail_goes_on_beside_the_program_only_when_it_would_place_half_the_queue_or_more():
    """All of the queue in the time left: it runs whole instead; less than half: the program's first
    answer beats it and the child would only slow the program; half or more: the tail may beat that
    answer (the openb lists), so it goes on beside the program and the better answer wins."""
    from optalloc.anytime.timing import tail_beside_program

    budget = Budget(1.0, clock=lambda: 0.0)
    options = SolveOptions()  # strong_cost 6: the strong rule takes six first-rule runs
    assert not tail_beside_program(options, budget, first=0.1)  # 0.6 s: it fits whole
    assert tail_beside_program(options, budget, first=0.2)  # 1.2 s: not whole, half in 0.6 s
    assert not tail_beside_program(options, budget, first=0.4)  # 2.4 s: not even half
    assert tail_beside_program(options, budget, first=0.1, ahead=0.5)  # after a run of 0.5 s: 0.6 s do not fit


@pytest.mark.parametrize(
    ("half_the_queue", "lp_child", "expected"),
    [(True, False, "child collected"), (False, False, "child ended"), (True, True, "child ended")],
)
def test_a_tail_child_beside_the_program_is_collected_and_one_that_would_slow_it_is_ended(
    monkeypatch, half_the_queue, lp_child, expected
):
    """The strong rule's tail started before the first rule (its forecast said nothing else fits) when
    the first run shows the program fits: kept beside the program and collected with its answer when
    it would place half the queue or more, else ended once the program starts (it stays the fallback
    until then); ended too when the program's second LP vertex solves in a child process already."""
    from optalloc.core.options import PortfolioConfig
    from optalloc.models.exact import Prepared

    events: list[str] = []

    monkeypatch.setattr("optalloc.anytime.portfolio.strong_beside", lambda *args, **kwargs: _FakeChild(events, "child"))
    monkeypatch.setattr("optalloc.anytime.portfolio._machine_busy", lambda: False)
    monkeypatch.setattr("optalloc.anytime.portfolio.tail_beside_program", lambda *args, **kwargs: half_the_queue)
    monkeypatch.setattr("optalloc.models.exact.usable_cpus", lambda: 1)  # no real LP child
    monkeypatch.setattr(Prepared, "solving", property(lambda self: lp_child))
    import optalloc.models

    spare_cpu: list[bool] = []
    solve_exact = optalloc.models.solve_exact

    def program(*args, **kwargs):  # type: ignore[no-untyped-def]
        spare_cpu.append(kwargs["spare_cpu"])
        return solve_exact(*args, **kwargs)

    monkeypatch.setattr(optalloc.models, "solve_exact", program)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    # First-fit forecast at 100 jobs a second (24 s): the child starts before it; the program then fits.
    config = PortfolioConfig(pace_jobs_per_second=100.0, strong_cost=1000.0)
    answer = solve(problem, "auto", time_limit=3, portfolio=config)
    assert "candidates" in answer.stats  # the program ran
    assert events == [expected]
    # With the child beside it until the deadline, the program starts no child process of its own.
    assert spare_cpu == [expected == "child ended"]
    assert verify(problem, answer) == []


@pytest.mark.parametrize(
    ("insure", "lp_child", "expected"),
    [(True, False, ["tail started"]), (False, True, ["room made", "tail started"]), (False, False, [])],
)
def test_when_the_program_fits_only_insured_the_tail_child_starts_after_the_first_run(
    monkeypatch, insure, lp_child, expected
):
    """No child before the first run (the program's second LP vertex solving in its own child, a busy
    load average, or a program that fitted for sure), and the first run shows the program fits only with
    the strong rule's tail beside it: the tail's child starts then, beside the program (the program's
    own child ended first, through ``make_room``), rather than the program giving way to the cheap
    rules; without a way to make room for it, the program gives way."""
    import optalloc.anytime.portfolio as engine

    events: list[str] = []

    def tail(*args, make_room=None, **kwargs):  # type: ignore[no-untyped-def]
        if make_room is not None:
            make_room()
        events.append("tail started")
        return _FakeChild(events, "tail")

    monkeypatch.setattr(engine, "_strong_at_once", lambda *args, **kwargs: None)
    monkeypatch.setattr(engine, "first_answer_fits", lambda *args, insured=False, **kwargs: insured)
    monkeypatch.setattr(engine, "tail_beside_program", lambda *args, **kwargs: True)
    monkeypatch.setattr(engine, "strong_beside", tail)
    problem = synthetic.openb_like(nodes=60, jobs=300, seed=2)
    aside: list = []
    make_room = (lambda: events.append("room made")) if lp_child else None
    answer = engine.best_heuristic(
        problem, SolveOptions(), Budget(30.0), aside=aside, insure=insure, make_room=make_room
    )
    assert verify(problem, answer) == []
    if expected:  # the program's path: the tail goes on beside it, the caller collects it with the program
        assert events == expected and len(aside) == 1 and aside[0].beside_program
    else:  # the heuristics' path: no child for the program, the strong rule whole among the heuristics
        assert aside == [] and events == [] and "fgd-plus/fcfs" in answer.stats["portfolio_candidates"]


def test_a_child_beside_is_awaited_no_later_than_the_budgets_deadline_once_the_pace_moves_it() -> None:
    """A child's answer is due by the deadline of when it started; a loaded machine (the pace measured
    after) moves the engine's deadline earlier, to keep time for verifying: collect waits no longer."""
    import time

    from optalloc.anytime.strong_tail import Beside
    from optalloc.models.forked import Stream

    problem = synthetic.openb_like(nodes=30, jobs=50, seed=1)
    budget = Budget(3.0).narrow(1.0)  # (as solve() keeps its verify reserve, stretched by the pace)
    child = Beside(Stream(lambda send: time.sleep(10)), "fgd-plus", budget.deadline, problem)
    due = budget.deadline
    budget.observe_pace(0.1, 0.3)  # three times slower than unloaded: the deadline moves 2 s earlier
    assert budget.deadline < due - 1.5
    assert child.collect(budget) == []
    assert budget.clock() < due - 1.0


def test_an_error_while_collecting_the_children_still_ends_each_child_once(monkeypatch) -> None:
    """The children are taken off the caller's list before they are collected: when collecting one
    fails (an interrupt), the others are ended by the caller's cleanup, and none is ended twice."""
    import optalloc.anytime as engine

    events: list[str] = []

    class Child:
        beside_program, to_deadline = True, True

        def __init__(self, name: str, fails: bool) -> None:
            self.name, self.fails = name, fails

        def close(self) -> None:
            events.append(f"{self.name} ended")

        def collect(self, budget):  # type: ignore[no-untyped-def]
            events.append(f"{self.name} collected")
            if self.fails:
                raise KeyboardInterrupt
            return []

    def program(problem, options, budget, future, prepared, aside):  # type: ignore[no-untyped-def]
        aside += [Child("first", fails=True), Child("second", fails=False)]
        warm = engine.best_heuristic(problem, options, budget)
        return engine._with_aside(problem, options, None, warm, aside, {"portfolio_candidates": {}}, budget)

    monkeypatch.setattr(engine, "_program", program)
    problem = synthetic.openb_like(nodes=30, jobs=50, seed=1)
    with pytest.raises(KeyboardInterrupt):
        engine._auto(problem, SolveOptions(), Budget(2.0), None, None)
    assert events == ["first collected", "second ended"]


def test_a_child_started_for_the_heuristics_is_ended_when_they_fail(monkeypatch) -> None:
    """The strong rule's tail started before the first rule belongs to no caller yet: an interrupt
    during the first run ends it rather than leaving it to outlive the solve."""
    import optalloc.anytime.portfolio as engine

    events: list[str] = []

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_strong_at_once", lambda *args, **kwargs: _FakeChild(events, "child"))
    monkeypatch.setattr(engine, "run_heuristic", interrupted)
    problem = synthetic.openb_like(nodes=30, jobs=50, seed=1)
    with pytest.raises(KeyboardInterrupt):
        engine.best_heuristic(problem, SolveOptions(), Budget(2.0), aside=[])
    assert events == ["child ended"]


def test_the_program_starts_its_second_lp_vertex_in_a_child_only_with_a_cpu_to_spare(monkeypatch) -> None:
    """A second CPU likely free and a deadline: the second LP vertex solves in a child process; not when
    the caller runs a process of its own beside the program (three processes on two CPUs)."""
    import optalloc.models.exact as exact

    started: list[bool] = []
    monkeypatch.setattr(exact, "usable_cpus", lambda: 2)
    monkeypatch.setattr(exact, "_lp_methods", lambda form: [(None, False), ("simplex", True)])
    monkeypatch.setattr(exact, "lp_in_child", lambda *args, **kwargs: started.append(True) or "child")
    problem = synthetic.openb_like(nodes=60, jobs=300, seed=2)
    options = SolveOptions()
    for spare_cpu in (True, False):
        prepared = exact.compressed(problem, options)
        prepared.build(problem, options, Budget(5.0), spare_cpu=spare_cpu)
        assert prepared.solving is spare_cpu
    assert started == [True]
    assert not exact._second_cpu(Budget(None), True)  # no deadline: nothing to gain by it
