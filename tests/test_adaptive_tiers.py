"""Duration tiers (Tiresias-style discretised shortest-remaining-first) in the controller's solves."""

from __future__ import annotations

import pytest

from optalloc import Job, Node, Problem, ProblemError
from optalloc.adaptive import ActionKind, ControllerConfig, ControllerState, DriftConfig, Event, step
from optalloc.adaptive.tiers import check_thresholds, thresholds_for, tier_of, tiered

HOUR = 3600.0


def test_a_tier_counts_the_thresholds_below_the_remaining_time():
    cuts = (HOUR, 4 * HOUR)
    assert [tier_of(t, cuts) for t in (60.0, HOUR, HOUR + 1, 5 * HOUR)] == [0, 0, 1, 2]
    assert tier_of(None, cuts) == 2  # no estimate: the longest tier
    assert tier_of(30.0, ()) == 0


def test_tiered_priorities_keep_user_priorities_dominant():
    jobs = [
        Job("short", gpus=1, duration=60.0),
        Job("long", gpus=1, duration=10 * HOUR),
        Job("vip", gpus=1, priority=1),
    ]
    out = {j.name: j.priority for j in tiered(jobs, {}, (HOUR,))}
    assert out["short"] > out["long"]  # shorter tier first within a priority
    assert out["vip"] > out["short"]  # a higher user priority still wins, even without an estimate


@pytest.mark.parametrize("bad", [(HOUR, HOUR), (-1.0,), (2 * HOUR, HOUR), ("soon",)])
def test_bad_thresholds_are_a_problem_error_naming_the_field(bad):
    with pytest.raises(ProblemError, match="duration_tiers"):
        check_thresholds(bad)
    with pytest.raises(ProblemError, match="duration_tiers"):
        ControllerConfig(duration_tiers=bad)


def test_thresholds_split_the_estimates_into_equal_groups():
    cuts = thresholds_for([600.0 * k for k in range(1, 101)], tiers=4)
    assert len(cuts) == 3 and cuts == tuple(sorted(cuts))
    assert abs(cuts[1] - 30300.0) <= 60.0  # the median, to the minute
    assert thresholds_for([]) == () and thresholds_for([float("nan")]) == ()


def _one_gpu_cluster() -> Problem:
    return Problem((Node("n", cpu=16000, memory=64000, gpus=1, gpu_model="A"),), ())


def _started(tiers: tuple[float, ...]) -> list[str]:
    cfg = ControllerConfig(
        method="best-fit", duration_tiers=tiers, drift=DriftConfig(tau=1.0, min_interval=0.0, node_high=None)
    )
    state = ControllerState.initial(_one_gpu_cluster(), cfg)
    long_job = Job("long", gpus=1, arrival=0.0, duration=10 * HOUR)
    short_job = Job("short", gpus=1, arrival=1.0, duration=600.0)
    state, plan = step(state, 1.0, None, [Event.arrival(long_job), Event.arrival(short_job)])
    return [a.job for a in plan.actions if a.kind is ActionKind.START]


def test_with_tiers_the_short_job_takes_the_gpu_first():
    assert _started(()) == ["long"]  # FCFS without tiers
    assert _started((HOUR,)) == ["short"]


def test_a_re_solve_may_preempt_a_longer_tier_for_a_shorter_one():
    cfg = ControllerConfig.of(
        method="cpsat",
        budget=5.0,
        duration_tiers=(HOUR,),
        drift=DriftConfig(tau=1.0, min_interval=0.0, node_high=None, arrivals=1),
    )
    state = ControllerState.initial(_one_gpu_cluster(), cfg)
    state, _ = step(state, 0.0, None, [Event.arrival(Job("long", gpus=1, arrival=0.0, duration=10 * HOUR))])
    assert state.running == {"long"}
    state, plan = step(state, 60.0, None, [Event.arrival(Job("short", gpus=1, arrival=60.0, duration=600.0))])
    kinds = {a.job: a.kind for a in plan.actions}
    assert kinds == {"short": ActionKind.START, "long": ActionKind.PREEMPT}
    assert state.queue == ("long",)
