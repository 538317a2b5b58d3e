"""Drift detection: observed vs planned, EWMA, hysteresis, minimum interval, event triggers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optalloc import Job, Node, Placement, ProblemError
from optalloc.adaptive import drift
from optalloc.adaptive.drift import DriftConfig, DriftState, Trigger
from optalloc.adaptive.monitor import NodeUsage, Observation

NODES = (
    Node("a", cpu=10000, memory=10000, gpus=2, gpu_model="A", gpu_memory=1000),
    Node("b", cpu=10000, memory=10000, gpus=2, gpu_model="A", gpu_memory=1000),
)
INDEX = {"a": 0, "b": 1}
JOBS = {"j": Job("j", gpus=2, cpu=4000, memory=2000, gpu_memory=500)}
PLACED = [Placement("j", 0, "a", (0, 1), 1000)]


def reading(gpu_a: float, config: DriftConfig, gpu_b: float | None = None) -> drift.DriftMeasure:
    nodes = {"a": NodeUsage(gpu_milli=gpu_a, cpu=4000, memory=2000)}
    if gpu_b is not None:
        nodes["b"] = NodeUsage(gpu_milli=gpu_b, cpu=0, memory=0)
    seen = drift.observed(INDEX, Observation(0.0, nodes), 2)
    return drift.measure(drift.capacity(NODES), drift.planned(INDEX, JOBS, PLACED, 2), seen, config)


def test_planned_usage_counts_every_gpu_and_the_gpu_memory_per_gpu() -> None:
    plan = drift.planned(INDEX, JOBS, PLACED, 2)
    assert plan[0].tolist() == [2000, 1000, 4000, 2000]
    assert plan[1].tolist() == [0, 0, 0, 0]


def test_drift_is_the_gap_over_capacity_and_nan_where_unobserved() -> None:
    cfg = DriftConfig()
    m = reading(1000.0, cfg)  # node a: GPUs half as busy as planned; node b not reported
    assert m.node[0] == pytest.approx(0.5)
    assert math.isnan(m.node[1])
    assert m.cluster == pytest.approx(0.5)  # only node a's capacity counts
    m2 = reading(1000.0, cfg, gpu_b=1000.0)  # b busy though nothing is planned there
    assert m2.node[1] == pytest.approx(0.5)
    assert m2.cluster == pytest.approx((1000 + 1000) / 4000)


def test_ewma_follows_the_time_between_readings() -> None:
    cfg = DriftConfig(tau=10.0)
    st = DriftState.initial(["a", "b"])
    st = drift.smooth(st, reading(2000.0, cfg), 0.0, cfg)  # drift 0
    assert st.cluster == 0.0
    st = drift.smooth(st, reading(0.0, cfg), 10.0, cfg)  # raw drift 1.0, one time constant later
    assert st.cluster == pytest.approx(1 - math.exp(-1))
    again = drift.smooth(st, reading(0.0, cfg), 10.0, cfg)  # the same sample twice changes nothing
    assert again.cluster == st.cluster


def test_hysteresis_triggers_above_high_and_rearms_only_below_low() -> None:
    cfg = DriftConfig(tau=1e-6, high=0.3, low=0.1, node_high=None, min_interval=0)
    st = drift.smooth(DriftState.initial(["a", "b"]), reading(1000.0, cfg), 1.0, cfg)  # 0.5
    trig = drift.decide(st, 1.0, 0, cfg)
    assert trig is not None and trig.kind == "drift"
    st = drift.after_resolve(st, 1.0, cfg)
    assert drift.decide(st, 2.0, 0, cfg) is None  # still high, but disarmed
    st = drift.smooth(st, reading(1600.0, cfg), 2.0, cfg)  # 0.2: between low and high
    st = drift.smooth(st, reading(1000.0, cfg), 3.0, cfg)  # back to 0.5
    assert drift.decide(st, 3.0, 0, cfg) is None  # never fell below low: not re-armed
    st = drift.smooth(st, reading(2000.0, cfg), 4.0, cfg)  # 0.0: re-armed
    st = drift.smooth(st, reading(1000.0, cfg), 5.0, cfg)
    assert drift.decide(st, 5.0, 0, cfg) is not None


def test_min_interval_holds_back_a_drift_trigger() -> None:
    cfg = DriftConfig(tau=1e-6, min_interval=60.0, node_high=None)
    st = drift.after_resolve(DriftState.initial(["a", "b"]), 0.0, cfg)
    st = drift.smooth(st, reading(0.0, cfg), 1.0, cfg)
    assert drift.decide(st, 30.0, 0, cfg) is None
    assert drift.decide(st, 60.0, 0, cfg) is not None


def test_node_drift_triggers_per_node() -> None:
    cfg = DriftConfig(tau=1e-6, high=0.9, node_high=0.4, node_low=0.2, min_interval=0)
    st = drift.smooth(DriftState.initial(["a", "b"]), reading(2000.0, cfg, gpu_b=2000.0), 1.0, cfg)
    trig = drift.decide(st, 1.0, 0, cfg)
    assert trig is not None and trig.kind == "node-drift" and "'b'" in trig.detail
    st = drift.after_resolve(st, 1.0, cfg)
    assert not st.node_armed[1] and st.node_armed[0]


def test_arrivals_trigger_beyond_a_count_or_a_gpu_demand() -> None:
    cfg = DriftConfig(arrivals=3, arrival_gpu_milli=4000, min_interval=0)
    st = DriftState.initial(["a"])
    st = drift.note_arrival(drift.note_arrival(st, Job("x", gpus=1)), Job("y", gpus=1))
    assert drift.decide(st, 0.0, 2, cfg) is None
    trig = drift.decide(drift.note_arrival(st, Job("z", gpu_milli=100)), 0.0, 3, cfg)
    assert trig is not None and trig.kind == "arrivals"
    big = drift.note_arrival(DriftState.initial(["a"]), Job("g", gpus=4))
    assert drift.decide(big, 0.0, 1, cfg) == Trigger("arrivals", "1 arrivals (4000 milli-GPU) since the last re-solve")


def test_freed_capacity_triggers_only_while_jobs_wait() -> None:
    cfg = DriftConfig(freed_gpu_milli=1000, min_interval=0)
    st = drift.note_freed(DriftState.initial(["a"]), 2000)
    assert drift.decide(st, 0.0, 0, cfg) is None
    trig = drift.decide(st, 0.0, 1, cfg)
    assert trig is not None and trig.kind == "completions"


def test_node_events_bypass_the_minimum_interval() -> None:
    cfg = DriftConfig(min_interval=1e9)
    st = drift.after_resolve(DriftState.initial(["a"]), 0.0, cfg)
    st = drift.note_node(st, Trigger("node-lost", "node 'a' lost"))
    trig = drift.decide(st, 1.0, 0, cfg)
    assert trig is not None and trig.kind == "node-lost"
    assert drift.after_resolve(st, 1.0, cfg).node_changes == ()


def test_reindex_keeps_readings_of_kept_nodes() -> None:
    st = DriftState.initial(["a", "b"]).replace(node=np.array([0.3, 0.7]))
    moved = st.reindex(["b", "c"])
    assert moved.node[0] == 0.7 and math.isnan(moved.node[1])


def test_bad_thresholds_name_the_field() -> None:
    with pytest.raises(ProblemError, match=r"drift\.low"):
        DriftConfig(high=0.1, low=0.2)
    with pytest.raises(ProblemError, match=r"drift\.resources"):
        DriftConfig(resources=("gpu", "disk"))
