"""The Kubernetes scheduler extender: pods to jobs, and filter/prioritize with kube-scheduler's JSON.

The request and response bodies are shaped exactly like k8s.io/kube-scheduler/extender/v1's types as
kube-scheduler encodes them: ExtenderArgs {pod, nodes | nodenames}, ExtenderFilterResult {nodes |
nodenames, failedNodes, failedAndUnresolvableNodes, error}, HostPriorityList [{host, score}].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import fast_controller, wait_for

from optalloc import ProblemError
from optalloc.service import Settings, create_app
from optalloc.service.k8s import pod_to_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def pod(name: str, *, requests: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **spec: Any):
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": "9f2c1a7e-0000-4000-8000-000000000001",
            "annotations": annotations or {},
            "labels": {"app": name},
        },
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [{"name": "main", "image": "trainer:1", "resources": {"requests": requests or {}}}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def k8s_node(name: str, gpus: int = 4) -> dict[str, Any]:
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": str(gpus)},
            "allocatable": {"cpu": "31500m", "memory": "125Gi", "nvidia.com/gpu": str(gpus)},
        },
    }


def test_pod_requests_become_a_job() -> None:
    job = pod_to_job(
        pod(
            "trainer",
            requests={"cpu": "1500m", "memory": "4Gi", "nvidia.com/gpu": "2"},
            initContainers=[{"name": "init", "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}}],
            overhead={"cpu": "100m", "memory": "64Mi"},
        )
    )
    assert (job.name, job.cpu, job.memory, job.gpus, job.gpu_milli) == ("ml/trainer", 4100, 4160, 2, 0)
    two = pod("two", requests={"cpu": "1", "memory": "1073741824"})
    two["spec"]["containers"].append({"name": "side", "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}})
    job = pod_to_job(two)
    assert (job.cpu, job.memory) == (1500, 1536)  # a bare memory number is bytes; a limit alone is the request
    shared = pod_to_job(
        pod(
            "nb",
            requests={"cpu": "1"},
            annotations={"optalloc.io/gpu-milli": "300", "optalloc.io/gpu-models": "A100|H100"},
        )
    )
    assert shared.gpu_milli == 300 and shared.gpus == 0 and shared.gpu_models == frozenset({"A100", "H100"})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requests": {"cpu": "lots"}}, "pod.spec.containers[0].resources.requests.cpu"),
        ({"requests": {"nvidia.com/gpu": "1.5"}}, "pod.spec.containers[0].resources.requests.nvidia.com/gpu"),
        ({"annotations": {"optalloc.io/gpu-milli": "1000"}}, "pod.metadata.annotations.optalloc.io/gpu-milli"),
        (
            {"requests": {"nvidia.com/gpu": "1"}, "annotations": {"optalloc.io/gpu-milli": "500"}},
            "pod.metadata.annotations.optalloc.io/gpu-milli",
        ),
    ],
)
def test_bad_pods_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ProblemError) as info:
        pod_to_job(pod("bad", **change))
    assert info.value.field == field


@pytest.fixture
def client(tmp_path: Path) -> Any:
    settings = Settings(db=tmp_path / "s.sqlite", controller=fast_controller(), tick=0.05, batch_window=0.01)
    with TestClient(create_app(settings)) as c:
        for name in ("gpu-a", "gpu-b"):
            c.post("/v1/nodes", json={"name": name, "cpu": "32", "memory": "128Gi", "gpus": 4, "gpu_model": "A100"})
        c.post("/v1/nodes", json={"name": "cpu-a", "cpu": "64", "memory": "256Gi"})
        yield c


def test_filter_with_node_list_keeps_the_items_that_fit(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "hog", "gpus": 4, "cpu": 1000, "gpu_models": "A100"})
    hog = wait_for(lambda: client.get("/v1/jobs/hog").json()["placements"])[0]["node"]
    other = {"gpu-a": "gpu-b", "gpu-b": "gpu-a"}[hog]
    args = {
        "pod": pod("p1", requests={"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "2"}),
        "nodes": {
            "kind": "NodeList",
            "apiVersion": "v1",
            "metadata": {},
            "items": [k8s_node(n) for n in (hog, other, "cpu-a", "foreign")],
        },
    }
    r = client.post("/k8s/filter", json=args)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"nodes", "failedNodes", "failedAndUnresolvableNodes", "error"}
    assert [n["metadata"]["name"] for n in out["nodes"]["items"]] == [other, "foreign"]
    assert out["nodes"]["items"][0] == k8s_node(other)  # returned as given
    assert out["nodes"]["kind"] == "NodeList"
    assert set(out["failedNodes"]) == {hog, "cpu-a"} and "whole GPUs" in out["failedNodes"][hog]
    assert out["error"] == "" and out["failedAndUnresolvableNodes"] == {}


def test_filter_and_prioritize_by_name_follow_the_plan_for_known_jobs(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "ml/worker", "gpus": 1, "cpu": 1000})
    node = wait_for(lambda: client.get("/v1/jobs/ml/worker").json()["placements"])[0]["node"]
    args = {"pod": pod("worker", requests={"nvidia.com/gpu": "1"}), "nodenames": ["gpu-a", "gpu-b", "cpu-a"]}
    out = client.post("/k8s/filter", json=args).json()
    assert out["nodenames"] == [node] and "nodes" not in out
    assert all("plans job ml/worker" in why for why in out["failedNodes"].values())
    scores = client.post("/k8s/prioritize", json=args).json()
    assert scores == [{"host": n, "score": 10 if n == node else 0} for n in ("gpu-a", "gpu-b", "cpu-a")]
    # A pod naming its job by annotation follows that job's plan too.
    named = pod("worker-0", requests={"nvidia.com/gpu": "1"}, annotations={"optalloc.io/job": "ml/worker"})
    assert client.post("/k8s/filter", json={**args, "pod": named}).json()["nodenames"] == [node]


def test_a_waiting_job_fails_every_node_with_its_reason(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "ml/h100", "gpus": 1, "gpu_models": "H100"})
    wait_for(lambda: client.get("/v1/jobs/ml/h100").json()["state"] == "queued")
    args = {"pod": pod("h100", requests={"nvidia.com/gpu": "1"}), "nodenames": ["gpu-a", "gpu-b"]}
    out = client.post("/k8s/filter", json=args).json()
    assert out["nodenames"] == []
    assert out["failedNodes"] == {n: "optalloc: job ml/h100 waits (fits no node)" for n in ("gpu-a", "gpu-b")}


def test_prioritize_prefers_the_tightest_fit(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "three", "gpus": 3, "cpu": 1000})
    node = wait_for(lambda: client.get("/v1/jobs/three").json()["placements"])[0]["node"]
    args = {"pod": pod("one", requests={"nvidia.com/gpu": "1"}), "nodenames": ["gpu-a", "gpu-b", "cpu-a", "foreign"]}
    scores = {s["host"]: s["score"] for s in client.post("/k8s/prioritize", json=args).json()}
    other = {"gpu-a": "gpu-b", "gpu-b": "gpu-a"}[node]
    assert scores[node] == 10 > scores[other] and scores["cpu-a"] == 0 and scores["foreign"] == 0
    cpu_pod = {"pod": pod("etl", requests={"cpu": "48", "memory": "8Gi"}), "nodenames": ["gpu-a", "cpu-a"]}
    out = client.post("/k8s/filter", json=cpu_pod).json()
    assert out["nodenames"] == ["cpu-a"] and "CPU" in out["failedNodes"]["gpu-a"]


def test_extender_errors_are_422_with_the_field(client: TestClient) -> None:
    r = client.post("/k8s/filter", json={"pod": pod("x", requests={"memory": "16Qi"}), "nodenames": ["gpu-a"]})
    assert r.status_code == 422 and r.json()["field"] == "pod.spec.containers[0].resources.requests.memory"
    r = client.post("/k8s/filter", json={"pod": {"metadata": {}}, "nodenames": []})
    assert r.status_code == 422 and r.json()["field"] == "pod.metadata.name"
    r = client.post("/k8s/prioritize", json={"pod": pod("x"), "nodes": {"items": [{"metadata": {}}]}})
    assert r.status_code == 422 and r.json()["field"] == "nodes.items[0].metadata.name"
    assert client.post("/k8s/filter", json={"nodenames": []}).json()["field"] == "pod"
