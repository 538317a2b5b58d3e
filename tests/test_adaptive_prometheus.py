"""End to end against a real Prometheus: a DCGM-named exporter scraped every second, the controller
driven through PrometheusSource; and Prometheus down, slow, or answering garbage.

The real-Prometheus tests run whenever ``prometheus`` is on PATH (CI installs Debian's package) and
skip only when it is not. Every process and server they start is stopped by the fixtures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prom_harness import PROMETHEUS, CannedServer, DcgmExporter, PrometheusServer, api_answer, free_port

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, Unplaced, verify
from optalloc.adaptive import (
    ControllerConfig,
    ControllerState,
    DriftConfig,
    PrometheusSource,
    Queries,
    RightSizing,
    safe_observe,
    step,
)
from optalloc.adaptive.exporter import ControllerMetrics, Exporter, start_exporter

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not on PATH (apt-get install prometheus)"
)

NODE = Node("gpu-node-1", cpu=32000, memory=128000, gpus=1, gpu_model="A100", gpu_memory=40960)
TRAIN = Job("train-a", gpus=1, cpu=4000, memory=16000)
INFER = Job("infer-b", gpu_milli=500, cpu=2000, memory=8000, gpu_memory=8000, arrival=1.0)


def problem() -> Problem:
    return Problem((NODE,), (TRAIN, INFER), current=Allocation((Placement("train-a", 0, "gpu-node-1", (0,), 1000),)))


def controller_config() -> ControllerConfig:
    return ControllerConfig(
        method="best-fit",
        drift=DriftConfig(tau=1.0, high=0.25, low=0.1, min_interval=0.0, node_high=None),
        right_size=RightSizing(tau=0.5, min_observations=2),
    )


@dataclass
class Stack:
    dcgm: DcgmExporter
    controller: Exporter
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def prometheus_stack() -> Iterator[Stack]:
    """One Prometheus per module (its first scrape takes ~6 s), scraping the DCGM-named exporter and the
    controller's own exporter."""
    dcgm = DcgmExporter()
    controller = start_exporter(0, metrics=ControllerMetrics())
    try:
        prom = PrometheusServer([f"127.0.0.1:{dcgm.port}", f"127.0.0.1:{controller.port}"])
    except BaseException:
        dcgm.close()
        controller.close()
        raise
    try:
        yield Stack(dcgm, controller, prom)
    finally:
        prom.close()
        controller.close()
        dcgm.close()


@pytest.fixture
def stack(prometheus_stack: Stack) -> Stack:
    """The module's stack, Prometheus (re)started if a test stopped it."""
    prometheus_stack.prometheus.start()
    return prometheus_stack


@pytest.mark.prometheus
@needs_prometheus
def test_watch_once_prints_the_plan_from_a_real_prometheus(stack: Stack, tmp_path: Path) -> None:
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from optalloc.cli.watch import watch
    from optalloc.io import write_problem

    stack.dcgm.set_gpu("gpu-node-1", 0, util=100, fb_used=4096, pod="train-a")
    stack.prometheus.wait_for("DCGM_FI_DEV_GPU_UTIL == 100")
    path = tmp_path / "cluster.json"
    write_problem(problem(), path)
    app = typer.Typer()
    app.command()(watch)
    app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps `watch` as a subcommand
    args = [
        "watch",
        str(path),
        "--prometheus",
        stack.prometheus.url,
        "--once",
        "--method",
        "best-fit",
        "--gpu-only",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["trigger"]["kind"] == "initial" and not plan["stale"]
    assert plan["allocation"]["unplaced"] == [{"job": "infer-b", "reason": "insufficient capacity"}]
    with pytest.raises(ProblemError, match="no cluster actuator"):  # optalloc.cli.main prints it, exit 2
        CliRunner().invoke(app, ["watch", str(path), "--apply"], catch_exceptions=False)


@pytest.mark.prometheus
@needs_prometheus
def test_drift_seen_through_prometheus_triggers_a_resolve_and_a_plan(stack: Stack) -> None:
    stack.dcgm.set_gpu("gpu-node-1", 0, util=100, fb_used=4096, pod="train-a")
    stack.prometheus.wait_for('DCGM_FI_DEV_GPU_UTIL{Hostname="gpu-node-1"} == 100')
    source = PrometheusSource(stack.prometheus.url, queries=Queries.dcgm_only(), timeout=2.0)
    metrics = stack.controller.metrics

    def tick(state: ControllerState) -> tuple[ControllerState, object]:
        now = time.time()
        state, plan = step(state, now, safe_observe(source, now))
        metrics.record(state, plan)
        return state, plan

    st = ControllerState.initial(problem(), controller_config(), now=time.time())
    st, plan = tick(st)  # the initial re-solve: the GPU is taken, infer-b waits
    assert not st.stale and st.queue == ("infer-b",)
    assert st.drift.cluster == pytest.approx(0.0)  # 100% busy, as planned
    # Inject drift: train-a now keeps its GPU only 20% busy.
    stack.dcgm.set_gpu("gpu-node-1", 0, util=20, fb_used=4096, pod="train-a")
    triggers: list[str] = []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        time.sleep(0.4)
        st, plan = tick(st)
        assert not st.stale, st.error
        if plan.trigger is not None:
            triggers.append(plan.trigger.kind)
        if plan.starts:
            break
    assert "drift" in triggers, triggers
    assert [a.job for a in plan.starts] == ["infer-b"]
    assert [a.job for a in plan.resizes] == ["train-a"]
    assert plan.resizes[0].placements[0].gpu_milli < 1000
    waiting = tuple(Unplaced(n, "insufficient capacity") for n in st.queue)
    assert verify(st.problem(), st.allocation.replace(unplaced=waiting)) == []
    last = plan

    # The controller's own metrics reach the same Prometheus.
    found = stack.prometheus.wait_for('optalloc_resolves_total{trigger="drift"}')
    assert float(found[0]["value"][1]) >= 1

    # Prometheus goes down: the data turns stale, the plan stays, nothing crashes.
    stack.prometheus.stop()
    for _ in range(3):
        st, plan = tick(st)
        assert st.stale and plan.stale and "unreachable" in st.error
        assert plan.actions == () and plan.allocation == last.allocation
    assert st.plan is last
    assert b"optalloc_monitor_stale 1.0" in metrics.exposition()


# Misbehaving Prometheus: these need no prometheus binary -----------------------------------------


@pytest.mark.parametrize(
    ("body", "delay", "message"),
    [
        (api_answer([]), 3.0, "did not answer within"),  # slow
        (b"<html><body>502 Bad Gateway</body></html>", 0.0, "not JSON"),  # garbage
        (
            json.dumps({"status": "success", "data": {"resultType": "vector", "result": [42]}}).encode(),
            0.0,
            "malformed",
        ),
    ],
    ids=["slow", "html", "malformed-series"],
)
def test_slow_or_garbage_prometheus_keeps_the_last_plan(body: bytes, delay: float, message: str) -> None:
    good = CannedServer(
        api_answer([{"metric": {"Hostname": "gpu-node-1", "gpu": "0", "pod": "train-a"}, "value": [1.0, "100"]}])
    )
    bad = CannedServer(body, delay=delay)
    try:
        st = ControllerState.initial(problem(), controller_config(), now=100.0)
        st, first = step(st, 100.0, safe_observe(PrometheusSource(good.url, queries=Queries.dcgm_only()), 100.0))
        assert not st.stale
        source = PrometheusSource(bad.url, queries=Queries.dcgm_only(), timeout=0.3)
        for t in (101.0, 102.0):
            st, plan = step(st, t, safe_observe(source, t))
            assert st.stale and plan.stale and message in st.error
            assert plan.actions == () and plan.allocation == first.allocation
        st, plan = step(st, 103.0, safe_observe(PrometheusSource(good.url, queries=Queries.dcgm_only()), 103.0))
        assert not st.stale  # fresh data again
    finally:
        good.close()
        bad.close()


def test_prometheus_down_from_the_start_never_crashes_the_loop() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    st = ControllerState.initial(problem(), controller_config(), now=0.0)
    for t in range(3):
        st, plan = step(st, float(t), safe_observe(source, float(t)))
        assert st.stale and plan.stale
    assert st.queue == ("infer-b",)  # events and the initial re-solve still work; drift is not acted on
