"""The adaptive loop driven by a time-share policy: plans from events and observed throughputs."""

from __future__ import annotations

import pytest

from optalloc.adaptive import ActionKind, Event
from optalloc.adaptive.timeshare import Progress, TimeshareLoop
from optalloc.core import Job
from optalloc.io.gavel import gavel_cluster

pytest.importorskip("cvxpy")

PROFILE = {"fast": {"v100": 4.0, "k80": 1.0}, "slow": {"v100": 1.0, "k80": 1.0}}


def job(name: str, gpus: int = 8) -> Job:
    return Job(name, cpu=4000 * gpus, memory=16384 * gpus, gpus=gpus)


def test_a_round_is_a_plan_of_verified_starts():
    loop = TimeshareLoop(
        "max-min-fairness", gavel_cluster({"v100": 8, "k80": 8}), throughputs=lambda j: PROFILE[j.name]
    )
    plan = loop.step(0.0, [Event.arrival(job("fast")), Event.arrival(job("slow"))])
    assert {a.job: a.kind for a in plan.actions} == {"fast": ActionKind.START, "slow": ActionKind.START}
    nodes = {a.job: a.nodes[0] for a in plan.actions}
    assert nodes["fast"].startswith("v100") and nodes["slow"].startswith("k80")
    assert plan.method == "max-min-fairness" and not plan.error
    assert {p.job for p in plan.allocation.placements} == {"fast", "slow"}


def test_observed_throughputs_drive_the_policy():
    # The profile says "fast" is 4x faster on V100; observed, it is not, while "slow" is 3x faster
    # there: the next round swaps them.
    loop = TimeshareLoop(
        "max-min-fairness", gavel_cluster({"v100": 8, "k80": 8}), throughputs=lambda j: PROFILE[j.name]
    )
    loop.step(0.0, [Event.arrival(job("fast")), Event.arrival(job("slow"))])
    loop.scheduler.observe("slow", model="v100", rate=3.0)  # measured earlier, say
    plan = loop.step(360.0, progress={"fast": Progress(rate=1.0), "slow": Progress(rate=1.0)})
    assert {a.job for a in plan.migrations} == {"fast", "slow"}
    assert loop.scheduler.on == {"fast": "k80", "slow": "v100"}


def test_completions_and_lost_nodes_are_events():
    loop = TimeshareLoop("fifo", gavel_cluster({"v100": 16}), throughputs=lambda j: {"v100": 1.0})
    loop.step(0.0, [Event.arrival(job("a")), Event.arrival(job("b")), Event.arrival(job("c"))])
    assert loop.waiting == 1
    node = loop.running["a"][0].node
    plan = loop.step(10.0, [Event.node_lost(node)], round_boundary=False)
    assert [a.kind for a in plan.actions if a.job == "a"] == [ActionKind.PREEMPT]
    plan = loop.step(20.0, [Event.completion("b")], round_boundary=False)
    assert {a.job for a in plan.starts} <= {"a", "c"} and len(plan.starts) == 1


def test_a_failed_solve_is_reported_and_fifo_stands_in():
    loop = TimeshareLoop(
        "finish-time-fairness",
        gavel_cluster({"v100": 8}),
        throughputs=lambda j: {"v100": 1.0},
        solver_options={"max_iter": 1},
    )
    plan = loop.step(0.0, [Event.arrival(job("a", 4)), Event.arrival(job("b", 4))])
    assert plan.fallback and "unknown" in plan.error
    assert len(plan.starts) == 2  # FIFO's shares were followed
    assert loop.scheduler.statuses == {"unknown": 1}
