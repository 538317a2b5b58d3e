"""One budget per solve: the caller's stop flag, progress reports, and the host's signals left alone."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from optalloc import ProblemError, solve, verify
from optalloc.core.budget import Budget, OutOfTime, Progress
from optalloc.io import synthetic

METHODS = ["auto", "cpsat", "milp", "milp-highs", "lp-bound", "best-fit", "fgd"]


def busy_problem():
    """Big enough that the exact engines search for seconds without a stop."""
    return synthetic.openb_like(nodes=120, jobs=1500, seed=4)


@pytest.mark.parametrize("method", METHODS)
def test_a_stop_set_before_the_solve_returns_a_verified_answer_marked_stopped(method: str):
    stop = threading.Event()
    stop.set()
    problem = busy_problem()
    answer = solve(problem, method, time_limit=60, stop=stop)
    assert answer.stats["stopped"] is True
    assert verify(problem, answer) == []
    assert {u.job for u in answer.unplaced} | answer.placed_jobs == {j.name for j in problem.jobs}


@pytest.mark.parametrize("method", ["auto", "cpsat", "milp-highs"])
def test_a_stop_set_during_the_search_ends_it_long_before_the_time_limit(method: str):
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    problem = busy_problem()
    before = threading.active_count()
    start = time.perf_counter()
    timer.start()
    answer = solve(problem, method, time_limit=120, relative_gap=0.0, stop=stop)
    elapsed = time.perf_counter() - start
    timer.join()
    assert elapsed < 30, f"{method} took {elapsed:.1f}s after a stop at 0.5s"
    assert answer.stats.get("stopped") is True or answer.status.value == "optimal"
    assert answer.status.has_solution and verify(problem, answer) == []
    assert threading.active_count() <= before  # nothing of the solve keeps running


def test_progress_reports_improve_monotonically_and_end_at_the_answer():
    events: list[Progress] = []
    problem = busy_problem()
    answer = solve(problem, "auto", time_limit=3, on_progress=events.append)
    assert events, "no progress was reported"
    objectives = [e.objective for e in events if e.objective is not None]
    bounds = [e.bound for e in events if e.bound is not None]
    assert objectives == sorted(objectives) and bounds == sorted(bounds, reverse=True)
    assert [e.elapsed for e in events] == sorted(e.elapsed for e in events)
    assert objectives[-1] == pytest.approx(answer.objective)
    assert all(e.gap is None or e.gap >= 0 for e in events)
    assert {e.engine for e in events} >= {"first-fit"}  # the first rule of a plan from scratch


def test_a_progress_callback_that_raises_stops_the_solve_and_its_error_reaches_the_caller():
    def broken(event: Progress) -> None:
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):
        solve(busy_problem(), "auto", time_limit=30, on_progress=broken)


def test_stop_and_on_progress_are_checked_for_type():
    with pytest.raises(ProblemError, match="stop"):
        solve(busy_problem(), "best-fit", stop=True)  # type: ignore[arg-type]
    with pytest.raises(ProblemError, match="on_progress"):
        solve(busy_problem(), "best-fit", on_progress="print")  # type: ignore[arg-type]


def test_the_host_process_keeps_its_sigint_handler_after_a_cpsat_solve():
    """CP-SAT installs its own SIGINT handler unless told not to; a library must leave the host's."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        solve(busy_problem(), "cpsat", time_limit=1)
        assert signal.getsignal(signal.SIGINT) is not previous
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert caught == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_budget_narrowed_for_a_stage_shares_its_progress_and_stop():
    stop = threading.Event()
    seen: list[Progress] = []
    budget = Budget(10, stop=stop, on_progress=seen.append)
    stage = budget.narrow(4)
    assert stage.deadline == pytest.approx(budget.deadline - 4)
    stage.improve("x", objective=5, bound=9)
    budget.improve("y", objective=4)  # not an improvement: not reported
    assert [(e.engine, e.objective, e.bound) for e in seen] == [("x", 5, 9)]
    assert budget.objective == 5 and budget.bound == 9
    stop.set()
    assert stage.stopped and stage.left() == 0
    with pytest.raises(OutOfTime):
        stage.check()


def test_time_kept_for_later_work_stretches_with_the_measured_pace():
    """A stage narrowed to keep 1 s for what follows keeps 3 s once the machine is measured three times
    slower than unloaded (a shared machine): forecasts of uninterruptible work scale with the load."""
    now = [100.0]
    budget = Budget(10, clock=lambda: now[0])
    stage = budget.narrow(1.0)
    inner = stage.narrow(0.5)
    assert stage.deadline == pytest.approx(109.0) and inner.deadline == pytest.approx(108.5)
    budget.observe_pace(nominal=0.5, actual=1.5)
    assert stage.pace == 3.0
    assert stage.deadline == pytest.approx(107.0) and inner.deadline == pytest.approx(105.5)
    assert budget.detached().pace == 3.0
    # Work planned now that must end in time should the pace rise: the deadline at that pace.
    assert inner.deadline_at(4.0) == pytest.approx(110 - 4 * 1.5)
    assert budget.deadline_at(4.0) == budget.deadline
    # The caller's time limit is the first budget's, whatever its stages keep back.
    assert inner.time_limit == stage.time_limit == budget.time_limit == 10.0
    assert Budget().narrow(1.0).time_limit == float("inf")


def test_a_detached_step_of_a_few_clock_seconds_keeps_them_whatever_the_pace():
    """A sub-problem's step gets ``within`` clock seconds from now, not stretched by the pace: on a
    machine measured three times slower, a step of 0.2 s in a budget with 8 s left still has 0.2 s."""
    now = [100.0]
    budget = Budget(10, clock=lambda: now[0])
    now[0] = 102.0
    budget.observe_pace(nominal=0.5, actual=1.5)
    step = budget.detached(within=0.2)
    assert step.deadline == pytest.approx(102.2) and not step.expired(0.1)
    assert budget.detached(within=30.0).deadline == pytest.approx(110.0)  # never past the parent's


def test_the_pace_ignores_work_too_short_to_measure_and_stays_within_one_and_twenty():
    budget = Budget(10)
    budget.observe_pace(nominal=0.001, actual=1.0)  # a millisecond of work: noise, not load
    assert budget.pace == 1.0
    budget.observe_pace(nominal=1.0, actual=0.5)  # faster than the yardstick: never below 1
    assert budget.pace == 1.0
    budget.observe_pace(nominal=0.1, actual=100.0)
    assert budget.pace == 20.0


def test_cpsat_builds_no_model_without_the_time_to_build_it():
    from optalloc.core.options import SolveOptions
    from optalloc.models import cpsat
    from optalloc.models.classes import compress
    from optalloc.models.formulation import build

    form = build(compress(synthetic.openb_like(nodes=40, jobs=300, seed=3)))
    budget = Budget(0.004)
    run = cpsat.solve_program(form.program, form.weights, SolveOptions(), budget)
    assert run.values is None and run.stats["message"] == "no time to build the model"


def test_preload_imports_the_engines_a_method_runs_on_and_importing_optalloc_does_not():
    """A first solve() imports its engines before its clock starts; preload() pays that at start-up."""
    import subprocess
    import sys

    code = (
        "import sys, optalloc\n"
        "assert 'ortools.sat.python.cp_model' not in sys.modules and 'scipy.optimize' not in sys.modules\n"
        "optalloc.preload('auto')\n"
        "assert 'ortools.sat.python.cp_model' in sys.modules, 'cp-sat not imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_first_call_with_a_budget_far_below_its_imports_still_answers_every_job():
    """In a fresh interpreter, with a budget of 50 ms: every job is placed by what fitted or listed with a
    reason, and the answer is verified."""
    import subprocess
    import sys

    code = (
        "import optalloc\n"
        "from optalloc.io import synthetic\n"
        "p = synthetic.openb_like(nodes=40, jobs=300, seed=3)\n"
        "a = optalloc.solve(p, 'auto', time_limit=0.05)\n"
        "assert optalloc.verify(p, a) == []\n"
        "assert len({q.job for q in a.placements} | {u.job for u in a.unplaced}) == len(p.jobs)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _solve_in_worker(seed: int) -> tuple[str, bool]:
    problem = synthetic.openb_like(nodes=30, jobs=200, seed=seed)
    answer = solve(problem, "milp-highs", time_limit=5)
    return answer.status.value, verify(problem, answer) == []


def test_milp_highs_runs_inside_a_daemonic_pool_worker():
    """HiGHS's search runs in a forked child; a caller that is itself a multiprocessing.Pool worker
    (daemonic, which multiprocessing forbids to have children) still gets a verified answer."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(1) as pool:
        status, valid = pool.apply(_solve_in_worker, (3,))
    assert status in {"optimal", "feasible"} and valid


def test_an_exception_in_the_highs_child_is_raised_in_the_parent_with_its_traceback():
    from optalloc.core import SolverError
    from optalloc.models.highs import in_child

    def search(budget: Budget):
        raise ValueError("broken search")

    with pytest.raises(SolverError, match="broken search"):
        in_child(search, Budget(10.0), reserve=0.0)
