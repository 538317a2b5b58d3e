"""The controller's own Prometheus metrics: values after steps, own registry, a loopback endpoint."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from optalloc import Allocation, Job, Node, Problem, Status, Unplaced
from optalloc.adaptive import ControllerConfig, ControllerState, DriftConfig, NodeUsage, Observation, step
from optalloc.adaptive.exporter import ControllerMetrics, start_exporter


def samples(metrics: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_follow_the_steps() -> None:
    nodes = (Node("n0", cpu=8000, memory=32000, gpus=2, gpu_model="A"),)
    problem = Problem(nodes, (Job("a", gpus=1), Job("b", gpus=2)))
    cfg = ControllerConfig(method="best-fit", drift=DriftConfig(min_interval=0, node_high=None))
    metrics = ControllerMetrics(per_node=True)
    st, plan = step(ControllerState.initial(problem, cfg), 0.0)
    metrics.record(st, plan)
    st, plan = step(st, 1.0, Observation(1.0, {"n0": NodeUsage(gpu_milli=500.0)}))
    metrics.record(st, plan)
    st, plan = step(st, 2.0, Observation.missing(2.0, "down"))
    metrics.record(st, plan)
    got = samples(metrics)
    assert got[("optalloc_steps_total", ())] == 3
    assert got[("optalloc_resolves_total", (("trigger", "initial"),))] == 1
    assert got[("optalloc_actions_total", (("kind", "start"),))] == 1
    assert got[("optalloc_queue_length", ())] == 1  # b waits
    assert got[("optalloc_running_jobs", ())] == 1
    assert got[("optalloc_gpu_allocation_ratio", ())] == 0.5
    assert got[("optalloc_drift_ratio", ())] == 0.25  # 500 observed vs 1000 planned, of 2000
    assert got[("optalloc_node_drift_ratio", (("node", "n0"),))] == 0.25
    assert got[("optalloc_monitor_stale", ())] == 1
    assert got[("optalloc_solve_seconds_count", ())] == 1


def test_each_controller_has_its_own_registry() -> None:
    one, two = ControllerMetrics(), ControllerMetrics()
    one.steps.inc()
    assert samples(one)[("optalloc_steps_total", ())] == 1
    assert samples(two)[("optalloc_steps_total", ())] == 0


def test_exporter_serves_on_loopback_and_stops() -> None:
    with start_exporter(0) as exporter:
        assert exporter.host == "127.0.0.1" and exporter.port > 0
        exporter.metrics.queue.set(7)
        with urllib.request.urlopen(exporter.url, timeout=5) as answer:
            text = answer.read().decode()
    assert "optalloc_queue_length 7.0" in text


def test_fallbacks_are_counted_by_reason(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib

    from optalloc.solve import Method

    solve_mod = importlib.import_module("optalloc.solve")
    solve_mod.methods()

    def never_answers(problem: Problem, options: object) -> Allocation:
        left = tuple(Unplaced(j.name, "time limit") for j in problem.jobs)
        return Allocation(unplaced=left, method="never", status=Status.UNKNOWN)

    never = Method("never", never_answers, "exact", "test")
    monkeypatch.setitem(solve_mod._REGISTRY, "never", never)
    nodes = (Node("n0", cpu=8000, memory=32000, gpus=2, gpu_model="A"),)
    cfg = ControllerConfig(method="never", drift=DriftConfig(min_interval=0, node_high=None))
    metrics = ControllerMetrics()
    assert samples(metrics)[("optalloc_fallbacks_total", (("reason", "no-answer"),))] == 0  # exported from 0
    st, plan = step(ControllerState.initial(Problem(nodes, (Job("a", gpus=1),)), cfg), 0.0)
    metrics.record(st, plan)
    got = samples(metrics)
    assert got[("optalloc_fallbacks_total", (("reason", "no-answer"),))] == 1
    assert got[("optalloc_fallbacks_total", (("reason", "unavailable"),))] == 0
