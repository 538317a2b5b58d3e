"""Metrics of the simulator on hand-made timelines whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optalloc import ProblemError
from optalloc.sim import Counters, JobTable, Timeline, compute
from optalloc.sim.metrics import binned, cdf


def three_jobs() -> JobTable:
    # arrivals 0, 10, 20; first starts 0, 15, 40; finishes 100, 55, 60
    return JobTable.of([0, 10, 20], [0, 15, 40], [100, 55, 60])


def timeline() -> Timeline:
    # 4 GPUs; allocated 4 on [0, 10), 2 on [10, 30), 0 on [30, 40); used half of it; queue 2, 1, 0; running 1, 2, 0
    return Timeline.of(
        [0, 10, 30],
        end=40,
        gpu_capacity=4000,
        gpu_allocated=[4000, 2000, 0],
        gpu_used=[2000, 1000, 0],
        waiting=[2, 1, 0],
        running=[1, 2, 0],
        fragmentation=[0, 1000, 3000],
    )


def test_jct_and_queueing_delay_are_finish_and_first_start_minus_arrival() -> None:
    m = compute(three_jobs(), timeline(), end=100)
    assert m.avg_jct == pytest.approx((100 + 45 + 40) / 3)
    assert m.p50_jct == pytest.approx(45)
    assert m.p99_jct == pytest.approx(np.percentile([100, 45, 40], 99))
    assert m.avg_queueing_delay == pytest.approx((0 + 5 + 20) / 3)
    assert m.p50_queueing_delay == pytest.approx(5)
    assert m.makespan == pytest.approx(100)  # last finish - first arrival
    assert (m.finished, m.completion_rate, m.unplaceable) == (3, 1.0, 0)


def test_allocation_and_utilisation_are_time_weighted() -> None:
    m = compute(three_jobs(), timeline(), start=0, end=40)
    assert m.gpu_allocation == pytest.approx((4 * 10 + 2 * 20 + 0 * 10) / (4 * 40))
    assert m.gpu_utilisation == pytest.approx((2 * 10 + 1 * 20) / (4 * 40))
    # fragmentation: mean of 0, 1, 3 GPUs over 10, 20, 10 s; ratio against the free GPUs 0, 2, 4
    assert m.fragmentation == pytest.approx((0 * 10 + 1 * 20 + 3 * 10) / 40)
    assert m.fragmentation_ratio == pytest.approx((1000 * 20 + 3000 * 10) / (0 * 10 + 2000 * 20 + 4000 * 10))


def test_waiting_ratio_is_the_ratio_of_time_averaged_waiting_and_running_jobs() -> None:
    m = compute(three_jobs(), timeline(), start=0, end=40)
    assert m.avg_waiting == pytest.approx((2 * 10 + 1 * 20) / 40)
    assert m.avg_running == pytest.approx((1 * 10 + 2 * 20) / 40)
    assert m.waiting_ratio == pytest.approx(40 / 50)


def test_a_window_counts_only_what_happened_inside_it() -> None:
    # up to t = 60: job 0 (finishes at 100) is not finished; allocation over [10, 30] only
    m = compute(three_jobs(), timeline(), start=0, end=60)
    assert m.finished == 2 and m.unfinished == 1
    assert m.completion_rate == pytest.approx(2 / 3)
    assert m.avg_jct == pytest.approx((45 + 40) / 2)
    assert m.makespan == pytest.approx(60)  # jobs remain: the end of the run
    inner = compute(three_jobs(), timeline(), start=10, end=30)
    assert inner.gpu_allocation == pytest.approx(0.5)
    assert inner.jobs == 2  # arrivals at 10 and 20


def test_jobs_never_started_and_rejected_jobs_are_unplaceable() -> None:
    jobs = JobTable.of([0, 0, 5], [0, np.nan, np.nan], [10, np.nan, np.nan])
    jobs = JobTable(
        jobs.names,
        jobs.arrival,
        jobs.first_start,
        jobs.finish,
        jobs.gpus,
        jobs.preemptions,
        jobs.migrations,
        jobs.failures,
        np.array([False, False, True]),
    )
    m = compute(jobs, Timeline.of([0], end=20, gpu_capacity=1000, gpu_allocated=1000))
    assert (m.rejected, m.unfinished, m.unplaceable) == (1, 1, 2)
    assert m.completion_rate == pytest.approx(1 / 3)
    assert m.avg_queueing_delay == pytest.approx(0)


def test_no_finished_job_gives_nan_not_an_error() -> None:
    m = compute(JobTable.of([0], [np.nan], [np.nan]), Timeline.of([0], end=5, gpu_capacity=1000, gpu_allocated=0))
    assert math.isnan(m.avg_jct) and math.isnan(m.p99_jct)
    assert m.to_dict()["avg_jct"] is None  # JSON has no NaN


def test_solver_cost_figures_come_from_the_counters() -> None:
    counters = Counters(arrivals=3, completions=3, ticks=4, solve_time=2.0, wall_time=4.0)
    m = compute(three_jobs(), timeline(), counters, start=0, end=7200)
    assert m.events == 10 and m.events_per_second == pytest.approx(2.5)
    assert m.solver_time_share == pytest.approx(0.5)
    assert m.solver_time_per_hour == pytest.approx(1.0)  # 2 s over 2 simulated hours


def test_binned_averages_the_step_function_over_each_bin() -> None:
    tl = timeline()
    out = binned(tl, tl.allocated[:, 0], np.array([0.0, 20.0, 40.0]))
    assert out == pytest.approx([(4000 * 10 + 2000 * 10) / 20, (2000 * 10 + 0) / 20])


def test_cdf_is_sorted_and_ends_at_one() -> None:
    x, y = cdf(np.array([3.0, 1.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 3.0] and y.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_bad_timelines_are_refused_with_the_field_named() -> None:
    with pytest.raises(ProblemError, match=r"timeline\.time"):
        Timeline.of([10, 0], end=20, gpu_capacity=1, gpu_allocated=0)
    with pytest.raises(ProblemError, match=r"timeline\.end"):
        Timeline.of([0, 10], end=5, gpu_capacity=1, gpu_allocated=0)
    with pytest.raises(ProblemError, match="end"):
        compute(three_jobs(), timeline(), start=50, end=10)


def test_plot_lines_of_up_to_forty_policies_are_all_distinct() -> None:
    from optalloc.sim.plots import line_style

    styles = {(s["color"], s["linestyle"]) for s in map(line_style, range(40))}
    assert len(styles) == 40


@pytest.mark.slow
def test_plots_leave_the_process_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Writing the plots selects no matplotlib backend and imports no pyplot (in a fresh interpreter;
    ``matplotlib.get_backend()`` would itself import pyplot, so the raw setting is compared)."""
    import subprocess
    import sys

    code = f"""
import sys
import matplotlib
raw = lambda: dict.__getitem__(matplotlib.rcParams, "backend")  # noqa: E731 - read without resolving it
before = raw()
from optalloc.sim import Scenario, SimConfig, compare, policies, write_plots
from optalloc import Job, Node, Problem
nodes = (Node("n0", cpu=8000, memory=32000, gpus=2, gpu_model="A"),)
jobs = tuple(Job(f"j{{k}}", gpus=1, arrival=10.0 * k, duration=100.0) for k in range(6))
results = compare(Scenario.from_problem(Problem(nodes, jobs), "t"), policies(["fcfs+best-fit"]), SimConfig(tick=30))
files = write_plots({str(tmp_path)!r}, results)
assert [f.name for f in files] == ["sim_utilisation.png", "sim_jct_cdf.png", "sim_queue.png"], files
assert all(f.stat().st_size > 1000 for f in files)
assert "matplotlib.pyplot" not in sys.modules
assert raw() is before, (before, raw())  # no backend was selected for the process
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr
