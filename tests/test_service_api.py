"""The service's HTTP API in-process: nodes, jobs, the plan, the stateless solve, errors, auth, limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import TOKEN, assert_valid_plan, fast_controller, wait_for

from optalloc.service import Settings, create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NODES = [
    {"name": "a100-0", "cpu": "32", "memory": "256Gi", "gpus": 4, "gpu_model": "A100", "gpu_memory": "80Gi"},
    {"name": "a100-1", "cpu": 32000, "memory": 262144, "gpus": 4, "gpu_model": "A100", "gpu_memory": 81920},
    {"name": "cpu-0", "cpu": "64", "memory": "128Gi"},
]


def make_client(tmp_path: Path, **settings: Any) -> TestClient:
    values: dict[str, Any] = {
        "db": tmp_path / "state.sqlite",
        "controller": fast_controller(),
        "tick": 0.05,
        "batch_window": 0.01,
    }
    values.update(settings)
    return TestClient(create_app(Settings(**values)))


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with make_client(tmp_path) as c:
        for node in NODES:
            assert c.post("/v1/nodes", json=node).status_code == 201
        yield c


def state_of(c: TestClient, name: str) -> str:
    return str(c.get(f"/v1/jobs/{name}").json()["state"])


def placed(c: TestClient, name: str) -> list[dict[str, Any]]:
    return list(c.get(f"/v1/jobs/{name}").json()["placements"])


# Nodes and jobs -----------------------------------------------------------------------------------


def test_submit_places_jobs_and_every_plan_verifies(client: TestClient) -> None:
    jobs = [
        {"name": "train", "cpu": "8", "memory": "64Gi", "gpus": 2, "replicas": 2},
        {"name": "notebook", "cpu": "1", "memory": "4Gi", "gpu_milli": 250},
        {"name": "etl", "cpu": "16", "memory": "32Gi"},
    ]
    for job in jobs:
        r = client.post("/v1/jobs", json=job)
        assert r.status_code == 201, r.text
        assert r.json() == {"name": job["name"], "created": True, "state": "pending"}
    wait_for(lambda: all(state_of(client, j["name"]) == "running" for j in jobs))
    train = placed(client, "train")
    assert len(train) == 2 and all(len(p["gpus"]) == 2 and p["gpu_milli"] == 1000 for p in train)
    assert placed(client, "notebook")[0]["gpu_milli"] == 250
    plan = assert_valid_plan(client)
    assert plan["version"] >= 1
    assert {p["job"] for p in plan["allocation"]["placements"]} == {"train", "notebook", "etl"}
    assert plan["allocation"]["summary"]["jobs_placed"] == 3
    assert plan["budget"] == 0.5


def test_unplaced_job_has_its_reason(client: TestClient) -> None:
    assert client.post("/v1/jobs", json={"name": "small", "gpus": 1}).status_code == 201
    wait_for(lambda: state_of(client, "small") == "running")
    assert client.post("/v1/jobs", json={"name": "h100", "gpus": 1, "gpu_models": ["H100"]}).status_code == 201
    assert client.post("/v1/jobs", json={"name": "big", "gpus": 4, "replicas": 2}).status_code == 201
    out = wait_for(lambda: (s := client.get("/v1/jobs/h100").json())["state"] == "queued" and s)
    assert out["reason"] == "fits no node"
    big = wait_for(lambda: (s := client.get("/v1/jobs/big").json())["state"] == "queued" and s)
    assert big["reason"] in ("insufficient capacity", "waiting", "not selected"), big
    queued = client.get("/v1/jobs", params={"state": "queued"}).json()
    assert {j["name"] for j in queued["jobs"]} == {"h100", "big"} and queued["total"] == 2


def test_submit_is_idempotent_and_names_conflict(client: TestClient) -> None:
    job = {"name": "same", "cpu": 1000, "memory": 1024}
    assert client.post("/v1/jobs", json=job).status_code == 201
    again = client.post("/v1/jobs", json=job)
    assert again.status_code == 200 and again.json()["created"] is False
    other = client.post("/v1/jobs", json={**job, "cpu": 2000})
    assert other.status_code == 409
    assert other.json()["field"] == "name" and "another specification" in other.json()["detail"]


def test_cancel_frees_the_resources(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "hog", "gpus": 4, "replicas": 2, "cpu": 1000})
    wait_for(lambda: state_of(client, "hog") == "running")
    client.post("/v1/jobs", json={"name": "next", "gpus": 4, "cpu": 1000})
    wait_for(lambda: state_of(client, "next") == "queued")
    assert client.delete("/v1/jobs/hog").status_code == 204
    assert client.get("/v1/jobs/hog").status_code == 404
    wait_for(lambda: state_of(client, "next") == "running")
    assert client.delete("/v1/jobs/hog").status_code == 404
    assert_valid_plan(client)


def test_batch_submit_is_all_or_none(client: TestClient) -> None:
    good = [{"name": f"b{i}", "cpu": 500, "memory": 512} for i in range(5)]
    r = client.post("/v1/jobs:batch", json={"jobs": good})
    assert r.status_code == 201 and r.json() == {"accepted": 5, "created": 5}
    bad = [{"name": "c0", "cpu": 1}, {"name": "c1", "gpus": -2}]
    r = client.post("/v1/jobs:batch", json={"jobs": bad})
    assert r.status_code == 422 and r.json()["field"] == "jobs[1].gpus"
    assert client.get("/v1/jobs/c0").status_code == 404
    twice = client.post("/v1/jobs:batch", json={"jobs": [{"name": "d"}, {"name": "d"}]})
    assert twice.status_code == 409 and twice.json()["field"] == "jobs[1].name"


def test_drain_moves_jobs_and_undrain_puts_the_node_back(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "w", "gpus": 4, "cpu": 1000})
    first = wait_for(lambda: placed(client, "w"))[0]["node"]
    r = client.post(f"/v1/nodes/{first}/drain")
    assert r.status_code == 200 and r.json()["state"] == "drained"
    assert client.post(f"/v1/nodes/{first}/drain").json()["state"] == "already drained"
    moved = wait_for(lambda: (p := placed(client, "w")) and p[0]["node"] != first and p)
    assert moved[0]["node"] in {"a100-0", "a100-1"} - {first}
    node = client.get(f"/v1/nodes/{first}").json()
    assert node["drained"] is True and node["jobs"] == []
    assert client.post(f"/v1/nodes/{first}/undrain").json()["state"] == "active"
    assert client.get(f"/v1/nodes/{first}").json()["drained"] is False
    assert_valid_plan(client)


def test_node_register_update_remove(client: TestClient) -> None:
    new = {"name": "t4-0", "cpu": 16000, "memory": 65536, "gpus": 2, "gpu_model": "T4"}
    assert client.post("/v1/nodes", json=new).status_code == 201
    assert client.post("/v1/nodes", json=new).status_code == 200  # identical: nothing to do
    assert client.post("/v1/nodes", json={**new, "gpus": 4}).status_code == 409
    r = client.put("/v1/nodes/t4-0", json={**new, "gpus": 4})
    assert r.status_code == 200
    assert client.get("/v1/nodes/t4-0").json()["node"]["gpus"] == 4
    assert client.put("/v1/nodes/t4-0", json={**new, "name": "other"}).status_code == 422
    assert client.put("/v1/nodes/t4-1", json={k: v for k, v in new.items() if k != "name"}).status_code == 201
    assert client.delete("/v1/nodes/t4-0").status_code == 204
    assert client.get("/v1/nodes/t4-0").status_code == 404
    assert client.delete("/v1/nodes/t4-0").status_code == 404
    client.post("/v1/jobs", json={"name": "on-t4", "gpus": 1, "gpu_models": "T4"})
    wait_for(lambda: placed(client, "on-t4"))
    client.delete("/v1/nodes/t4-1")
    wait_for(lambda: state_of(client, "on-t4") == "queued")


def test_nodes_show_gpus_by_job(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "s1", "gpu_milli": 400, "gpu_models": "A100"})
    client.post("/v1/jobs", json={"name": "s2", "gpu_milli": 300, "gpu_models": "A100"})
    wait_for(lambda: state_of(client, "s1") == "running" and state_of(client, "s2") == "running")
    gpus = [g for n in client.get("/v1/nodes").json()["nodes"] for g in n["gpus"] if g["jobs"]]
    held = {job: milli for g in gpus for job, milli in g["jobs"].items()}
    assert held == {"s1": 400, "s2": 300}
    assert all(g["used_milli"] == sum(g["jobs"].values()) for g in gpus)


def test_plan_diff_since_versions(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "p1", "cpu": 1000})
    wait_for(lambda: state_of(client, "p1") == "running")
    v1 = client.get("/v1/plan").json()["version"]
    client.post("/v1/jobs", json={"name": "p2", "cpu": 1000})
    wait_for(lambda: state_of(client, "p2") == "running")
    plan = client.get("/v1/plan", params={"since": v1}).json()
    assert plan["changes"]["since"] == v1 and plan["changes"]["starts"] == ["p2"]
    assert client.get("/v1/plan", params={"since": 0}).json()["changes"]["starts"] == ["p1", "p2"]
    default = client.get("/v1/plan").json()
    assert default["changes"]["since"] == default["version"] - 1
    assert client.get("/v1/plan", params={"since": 10_000}).status_code == 404
    assert any(a["kind"] == "start" for a in default["actions"])


def test_cluster_view_and_decisions(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "v", "gpus": 1})
    wait_for(lambda: state_of(client, "v") == "running")
    view = client.get("/v1/cluster").json()
    assert view["running"] == 1 and view["last_solve"]["budget"] == 0.5
    assert any(d["job"] == "v" and d["kind"] == "start" for d in view["decisions"])
    assert 0 < view["gpu_allocation_ratio"] <= 1


# Observations and drift -----------------------------------------------------------------------


def test_pushed_observations_feed_the_drift(client: TestClient) -> None:
    client.post("/v1/jobs", json={"name": "busy", "gpus": 4, "cpu": 1000})
    node = wait_for(lambda: placed(client, "busy"))[0]["node"]
    r = client.post("/v1/observations", json={"nodes": {node: {"gpu_milli": 100, "cpu": 500}}})
    assert r.status_code == 202 and r.json()["nodes"] == 1
    wait_for(lambda: client.get("/v1/cluster").json()["drift"] is not None)
    assert client.get("/v1/cluster").json()["drift"] > 0
    assert "optalloc_drift_ratio" in client.get("/metrics").text
    old = client.post("/v1/observations", json={"time": 1.0, "nodes": {}})
    assert old.status_code == 409 and old.json()["field"] == "time"
    future = client.post("/v1/observations", json={"time": 1e12})
    assert future.status_code == 422 and future.json()["field"] == "time"
    negative = client.post("/v1/observations", json={"nodes": {node: {"gpu_milli": -1}}})
    assert negative.status_code == 422 and negative.json()["field"] == f"nodes.{node}.gpu_milli"


# The stateless solve ----------------------------------------------------------------------------


def test_solve_answers_exactly_the_allocation_file(client: TestClient) -> None:
    from optalloc import verify
    from optalloc.io import allocation_from_dict, problem_from_dict

    example = Path(__file__).resolve().parents[1] / "examples" / "data" / "problem.json"
    problem = json.loads(example.read_text())
    r = client.post("/v1/solve", json={"problem": problem, "method": "auto", "time_limit": 1.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"summary", "placements", "unplaced"}
    assert verify(problem_from_dict(problem), allocation_from_dict(body)) == []
    assert body["summary"]["status"] in ("optimal", "feasible")


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"problem": {"jobs": [{"name": "j", "gpus": -1}]}}, "problem.jobs[0].gpus", "greater than or equal to 0"),
        ({"problem": {"jobs": [{"name": "j", "replicas": 10**9}]}}, "problem.jobs[0].replicas", "less than or equal"),
        ({"problem": {"jobs": [{"name": "j", "gpu": 1}]}}, "problem.jobs[0].gpu", "not a known field"),
        ({"problem": {"nodes": [{"cpu": 1}]}}, "problem.nodes[0].name", "required"),
        ({"problem": {}, "method": "magic"}, "method", "magic"),
        ({"problem": {}, "time_limit": 1e9}, "time_limit", "above the limit"),
        ({"problem": {}, "time_limit": 0}, "time_limit", "greater than 0"),
        ({"problem": {"jobs": [{"name": "j", "memory": "16Qi"}]}}, "problem.jobs[0].memory", "memory quantity"),
        ({"problem": {"jobs": [{"name": "j", "cpu": 1.5}]}}, "problem.jobs[0].cpu", "integer"),
        ({"problem": {"jobs": [{"name": "j"}, {"name": "j"}]}}, "jobs[1].name", "duplicate"),
        ({"problem": [1, 2]}, "problem", "object"),
    ],
)
def test_solve_errors_name_the_field(client: TestClient, payload: dict[str, Any], field: str, words: str) -> None:
    r = client.post("/v1/solve", json=payload)
    assert r.status_code == 422, r.text
    out = r.json()
    assert set(out) == {"status", "detail", "field", "errors"}
    assert out["field"] is not None and out["field"].endswith(field), out
    assert words in out["detail"].lower() or words in json.dumps(out).lower(), out
    assert "Traceback" not in r.text


def test_malformed_json_is_a_422_without_trace(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=b'{"name": "x",, }', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/v1/jobs", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "Traceback" not in r.text
    assert client.get("/v1/nowhere").json()["status"] == 404
    assert client.put("/v1/plan").status_code == 405


def test_internal_errors_are_500_without_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optalloc.service.runtime import Cluster

    def broken(self: Any, name: str) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Cluster, "job_status", broken)
    with make_client(tmp_path) as c:
        c.post("/v1/jobs", json={"name": "x"})
        c2 = TestClient(c.app, raise_server_exceptions=False)
        r = c2.get("/v1/jobs/x")
        assert r.status_code == 500
        assert "secret" not in r.text and "Traceback" not in r.text
        assert r.json()["detail"].startswith("internal error (logged as ")
        assert "optalloc_service_internal_errors_total 1.0" in c.get("/metrics").text


# Security ------------------------------------------------------------------------------------------


def test_token_guards_every_mutating_route(tmp_path: Path) -> None:
    with make_client(tmp_path, token=TOKEN) as c:
        mutating = [
            ("post", "/v1/nodes", {"name": "n"}),
            ("put", "/v1/nodes/n", {}),
            ("post", "/v1/nodes/n/drain", None),
            ("post", "/v1/nodes/n/undrain", None),
            ("delete", "/v1/nodes/n", None),
            ("post", "/v1/jobs", {"name": "j"}),
            ("post", "/v1/jobs:batch", {"jobs": []}),
            ("delete", "/v1/jobs/j", None),
            ("post", "/v1/observations", {}),
            ("post", "/v1/solve", {"problem": {}}),
        ]
        for method, path, body in mutating:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/v1/nodes", json={"name": "n", "cpu": 1000}, headers=good).status_code == 201
        for path in ("/v1/nodes", "/v1/jobs", "/v1/plan", "/v1/cluster", "/ui", "/metrics", "/healthz", "/readyz"):
            assert c.get(path).status_code == 200, path


def test_serve_refuses_a_public_bind_without_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optalloc.service.auth import TokenError, check_bind, read_token

    with pytest.raises(TokenError, match="not a loopback"):
        check_bind("0.0.0.0", None)
    with pytest.raises(TokenError, match="not a loopback"):
        check_bind("192.168.1.4", None)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_bind(host, None)
    check_bind("0.0.0.0", TOKEN)
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(TokenError, match="at least 16"):
        read_token(file=short)
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    assert read_token(file=good) == TOKEN
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    assert read_token(env="MY_TOKEN") == TOKEN
    with pytest.raises(TokenError):
        read_token(env="UNSET_TOKEN_VARIABLE_X")
    assert read_token() is None


def test_request_size_limits(tmp_path: Path) -> None:
    with make_client(tmp_path, max_body=2048, max_large_body=8192) as c:
        big = {"name": "x", "node_selector": {f"k{i}": "v" * 50 for i in range(100)}}
        r = c.post("/v1/jobs", json=big)
        assert r.status_code == 413 and r.json()["status"] == 413
        huge = {"problem": {"jobs": [{"name": f"j{i}"} for i in range(1000)]}}
        assert c.post("/v1/solve", json=huge).status_code == 413

        def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_names_are_data_not_sql_or_html(client: TestClient) -> None:
    names = ["x'); DROP TABLE jobs; --", '<script>alert("x")</script>', "a\"b'c&d"]
    for name in names:
        assert client.post("/v1/jobs", json={"name": name, "cpu": 100}).status_code == 201, name
    wait_for(lambda: all(state_of(client, n) == "running" for n in names))
    page = client.get("/ui").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert client.get("/ui").headers["content-security-policy"].startswith("default-src 'none'")
    assert {j["name"] for j in client.get("/v1/jobs").json()["jobs"]} >= set(names)


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "detail": ""}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/v1/jobs", json={"name": "m", "gpus": 1})
    wait_for(lambda: state_of(client, "m") == "running")
    text = client.get("/metrics").text
    for metric in (
        "optalloc_queue_length",
        "optalloc_gpu_allocation_ratio",
        "optalloc_service_cpu_allocation_ratio",
        "optalloc_solve_seconds_bucket",
        "optalloc_drift_ratio",
        "optalloc_fallbacks_total",
        "optalloc_service_requests_total",
        'route="/v1/jobs"',
        "optalloc_service_store_write_seconds",
    ):
        assert metric in text, metric
