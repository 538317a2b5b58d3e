"""Metrics sources: the Prometheus HTTP API client (against canned answers), label mapping, errors,
and the local, static and replay sources. The real-Prometheus tests are in test_adaptive_prometheus.py."""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from prom_harness import CannedServer, api_answer, free_port

from optalloc import OptallocError, ProblemError
from optalloc.adaptive.monitor import (
    JobUsage,
    LabelMap,
    LocalSource,
    MetricsSource,
    MonitorError,
    NodeUsage,
    Observation,
    PrometheusSource,
    Queries,
    Query,
    ReplaySource,
    StaticSource,
    safe_observe,
)


def series(value: float, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.0, repr(float(value))]}


def fake_prometheus(params: dict[str, str]) -> bytes:
    """Answers like a Prometheus holding dcgm-exporter and node_exporter series for two nodes."""
    q = params["query"]
    if q == "DCGM_FI_DEV_GPU_UTIL":
        return api_answer(
            [
                series(50, Hostname="gpu-1", gpu="0", pod="train-a-0"),
                series(30, Hostname="gpu-1", gpu="1", pod="train-a-1"),
                series(100, Hostname="gpu-2", gpu="0", pod=""),
            ]
        )
    if q == 'DCGM_FI_DEV_GPU_UTIL{pod!=""}':
        return api_answer(
            [
                series(50, Hostname="gpu-1", gpu="0", pod="train-a-0"),
                series(30, Hostname="gpu-1", gpu="1", pod="train-a-1"),
            ]
        )
    if q.startswith("DCGM_FI_DEV_FB_USED"):
        return api_answer(
            [
                series(2048, Hostname="gpu-1", gpu="0", pod="train-a-0"),
                series(1024, Hostname="gpu-1", gpu="1", pod="train-a-1"),
            ]
        )
    if "node_cpu_seconds_total" in q:
        return api_answer([series(3.5, instance="gpu-1:9100"), series(1.0, instance="10.0.0.2:9100")])
    if "node_memory" in q:
        return api_answer([series(8 * 2**30, instance="gpu-1:9100")])
    if "container_cpu" in q:
        return api_answer([series(2.0, pod="train-a-0", namespace="ml"), series(1.5, pod="train-a-1", namespace="ml")])
    if "container_memory" in q:
        return api_answer([series(2**30, pod="train-a-0", namespace="ml")])
    return api_answer([])


@pytest.fixture
def server() -> Iterator[CannedServer]:
    s = CannedServer(fake_prometheus)
    yield s
    s.close()


def test_prometheus_source_maps_dcgm_and_node_exporter_series_to_nodes_and_jobs(server: CannedServer) -> None:
    labels = LabelMap(nodes={"10.0.0.2": "gpu-2"}, job_pattern=r"(?P<job>.+)-\d+$")
    obs = PrometheusSource(server.url, labels=labels).observe(1700000000.0)
    assert not obs.stale
    assert obs.nodes["gpu-1"] == NodeUsage(gpu_milli=800.0, gpu_memory=3072.0, cpu=3500.0, memory=8192.0, gpus=2)
    assert obs.nodes["gpu-2"] == NodeUsage(gpu_milli=1000.0, cpu=1000.0, gpus=1)  # via the rename of 10.0.0.2
    job = obs.jobs["train-a"]  # both pods map to one job
    assert job == JobUsage(gpu_milli=800.0, gpu_memory=2048.0, cpu=3500.0, memory=1024.0, gpus=2)
    assert job.gpu_milli_per_gpu == 400.0


def test_identical_queries_run_once_per_observation(server: CannedServer) -> None:
    q = Query("DCGM_FI_DEV_GPU_UTIL", 10.0)
    queries = Queries(
        node_gpu=q,
        job_gpu=q,
        node_gpu_memory=None,
        node_cpu=None,
        node_memory=None,
        job_gpu_memory=None,
        job_cpu=None,
        job_memory=None,
    )
    PrometheusSource(server.url, queries=queries).observe(1700000000.0)
    assert server.queries == ["DCGM_FI_DEV_GPU_UTIL"]


def test_no_series_at_all_is_a_stale_observation() -> None:
    s = CannedServer(api_answer([]))
    try:
        obs = PrometheusSource(s.url).observe(5.0)
    finally:
        s.close()
    assert obs.stale and "no series" in obs.error


def test_range_queries_give_one_observation_per_step() -> None:
    def answer(params: dict[str, str]) -> bytes:
        assert params["step"] == "15"
        values = [[100.0, "20"], [115.0, "40"], [130.0, "NaN"]]
        return api_answer([{"metric": {"Hostname": "n"}, "values": values}], kind="matrix")

    s = CannedServer(answer)
    try:
        history = PrometheusSource(s.url, queries=Queries.dcgm_only()).history(100.0, 130.0, 15)
    finally:
        s.close()
    assert [o.time for o in history] == [100.0, 115.0]  # the NaN sample is dropped
    assert history[1].nodes["n"].gpu_milli == 400.0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"<html>It works!</html>", 200, "not JSON"),
        (b'{"hello": "world"}', 200, "not an API v1 answer"),
        (json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode(), 400, "bad_data"),
        (api_answer([{"metric": {}, "value": [1, "many"]}]), 200, "not a number"),
        (api_answer([{"metric": {}, "value": "7"}]), 200, "malformed sample"),
        (api_answer([["not", "a", "series"]]), 200, "malformed series"),
        (api_answer([], kind="matrix"), 200, "expected a vector"),
        (b"", 503, "not JSON"),
    ],
)
def test_garbage_answers_raise_monitor_error(body: bytes, status: int, message: str) -> None:
    s = CannedServer(body, status=status)
    try:
        with pytest.raises(MonitorError, match=message):
            PrometheusSource(s.url, queries=Queries.dcgm_only()).observe(1.0)
    finally:
        s.close()


def test_a_slow_server_raises_within_the_timeout() -> None:
    s = CannedServer(api_answer([]), delay=5.0)
    try:
        with pytest.raises(MonitorError, match=r"did not answer within 0.2s"):
            PrometheusSource(s.url, timeout=0.2).observe(1.0)
    finally:
        s.close()


def test_an_unreachable_server_raises_and_safe_observe_turns_it_stale() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(MonitorError, match="unreachable") as err:
        source.observe(1.0)
    assert isinstance(err.value, OptallocError)
    obs = safe_observe(source, 42.0)
    assert obs.stale and obs.time == 42.0 and "unreachable" in obs.error


def test_bad_source_settings_name_the_field() -> None:
    with pytest.raises(ProblemError, match="url"):
        PrometheusSource("localhost:9090")
    with pytest.raises(ProblemError, match="timeout"):
        PrometheusSource("http://localhost:9090", timeout=0)
    with pytest.raises(ProblemError, match="job_pattern"):
        LabelMap(job_pattern=r"(.+)-\d+")


def test_label_map_prefers_dcgm_hostname_and_strips_ports() -> None:
    labels = LabelMap()
    assert labels.node_of({"Hostname": "h1", "instance": "10.1.1.1:9400"}) == "h1"
    assert labels.node_of({"instance": "10.1.1.1:9100"}) == "10.1.1.1"
    assert labels.node_of({"instance": "[fe80::1]:9100"}) == "fe80::1"
    assert labels.node_of({"pod": "x"}) is None
    assert labels.job_of({"pod": "", "exported_pod": "job-7"}) == "job-7"


def test_static_and_replay_sources() -> None:
    usage = Observation(0.0, {"n": NodeUsage(gpu_milli=100.0)})
    assert StaticSource(usage).observe(9.0).time == 9.0
    replay = ReplaySource(
        (Observation(10.0, {"n": NodeUsage(cpu=1.0)}), Observation(20.0, {"n": NodeUsage(cpu=2.0)})), max_age=15
    )
    assert replay.observe(5.0).stale
    assert replay.observe(19.9).nodes["n"].cpu == 1.0
    assert replay.observe(20.0).nodes["n"].cpu == 2.0
    assert replay.observe(40.0).stale
    for source in (StaticSource(usage), replay, LocalSource(), PrometheusSource("http://x:1")):
        assert isinstance(source, MetricsSource)


def test_local_source_reports_this_machine() -> None:
    pytest.importorskip("psutil")
    obs = LocalSource(node="me", job_pids={"self": (__import__("os").getpid(),)}).observe(3.0)
    node = obs.nodes["me"]
    assert node.memory is not None and node.memory > 0
    assert node.cpu is not None and node.cpu >= 0
    assert obs.jobs["self"].memory is not None and obs.jobs["self"].memory > 0


class _NVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


def fake_nvml(monkeypatch: pytest.MonkeyPatch, *, fail_init: bool = False, fail_query: type | None = None) -> list[str]:
    """Install a fake ``pynvml`` with one GPU 40% busy using 2 GiB; returns the calls it saw."""
    calls: list[str] = []

    def query(*_: object) -> Any:
        calls.append("query")
        if fail_query is not None:
            raise fail_query("device query failed")
        return types.SimpleNamespace(gpu=40, used=2048 * 1024 * 1024)

    def init() -> None:
        calls.append("init")
        if fail_init:
            raise _NVMLError("driver not loaded")

    module = types.ModuleType("pynvml")
    module.NVMLError = _NVMLError  # type: ignore[attr-defined]
    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = query  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = query  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return calls


def test_local_source_reads_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psutil")
    calls = fake_nvml(monkeypatch)
    node = LocalSource(node="me").observe(1.0).nodes["me"]
    assert (node.gpu_milli, node.gpu_memory, node.gpus) == (400.0, 2048.0, 1)
    assert calls[0] == "init" and calls[-1] == "shutdown"


def test_nvml_errors_are_expected_other_exceptions_are_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No driver: no GPU figures. A failing device query: MonitorError (the data is stale). Anything
    else NVML's wrapper raises is not an NVML condition and is not swallowed."""
    pytest.importorskip("psutil")
    fake_nvml(monkeypatch, fail_init=True)
    assert LocalSource(node="me").observe(1.0).nodes["me"].gpu_milli is None
    calls = fake_nvml(monkeypatch, fail_query=_NVMLError)
    with pytest.raises(MonitorError, match="NVML failed"):
        LocalSource(node="me").observe(1.0)
    assert calls[-1] == "shutdown"
    assert safe_observe(LocalSource(node="me"), 2.0).stale
    fake_nvml(monkeypatch, fail_query=TypeError)
    with pytest.raises(TypeError):
        LocalSource(node="me").observe(1.0)


def test_free_port_helper_gives_a_bindable_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))
