"""POP: the partition is a set of scaled copies; parts run serially, in local processes or on Ray alike."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from optalloc import Problem, solve, verify
from optalloc.io import synthetic
from optalloc.pop import partition, sub_problem
from optalloc.testing import strategies as ost


def _shape(node):  # type: ignore[no-untyped-def]
    return (node.gpu_model, node.gpus, node.cpu, node.memory, node.gpu_memory, tuple(sorted(node.labels.items())))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ost.problems(min_jobs=1, max_jobs=8, max_nodes=6, with_running=True))
def test_every_node_and_job_is_in_exactly_one_part_and_running_jobs_stay_with_their_nodes(problem: Problem):
    parts = partition(problem, 3)
    nodes = [n for p in parts for n in p.nodes]
    jobs = [j for p in parts for j in p.jobs]
    assert sorted(nodes) == list(range(len(problem.nodes)))
    assert sorted(jobs) == list(range(len(problem.jobs)))
    where = {n: k for k, p in enumerate(parts) for n in p.nodes}
    if problem.current is not None:
        for k, p in enumerate(parts):
            for j in p.jobs:
                for placement in problem.current.by_job().get(problem.jobs[j].name, []):
                    assert where[problem.node_index[placement.node]] == k
    for p in parts:
        sub = sub_problem(problem, p)  # a valid problem of its own
        assert len(sub.nodes) == len(p.nodes) and len(sub.jobs) == len(p.jobs)


def test_parts_are_scaled_copies_of_the_whole():
    problem = synthetic.openb_like(nodes=400, jobs=3000, seed=3)
    parts = partition(problem, 8)
    sizes = [len(p.nodes) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert max(len(p.jobs) for p in parts) - min(len(p.jobs) for p in parts) <= 1
    for shape, count in Counter(_shape(n) for n in problem.nodes).items():
        per = [sum(1 for i in p.nodes if _shape(problem.nodes[i]) == shape) for p in parts]
        assert max(per) - min(per) <= 1, (shape, count, per)
    for key in Counter(j.demand_key for j in problem.jobs):
        per = [sum(1 for i in p.jobs if problem.jobs[i].demand_key == key) for p in parts]
        assert max(per) - min(per) <= 1


def test_the_partition_does_not_depend_on_the_input_order():
    problem = synthetic.openb_like(nodes=120, jobs=900, seed=4)
    shuffled_nodes, shuffled_jobs = list(problem.nodes), list(problem.jobs)
    random.Random(1).shuffle(shuffled_nodes)
    random.Random(2).shuffle(shuffled_jobs)
    other = problem.replace(nodes=tuple(shuffled_nodes), jobs=tuple(shuffled_jobs))

    def named(p: Problem) -> list[tuple[frozenset[str], frozenset[str]]]:
        return [
            (frozenset(p.nodes[n].name for n in part.nodes), frozenset(p.jobs[j].name for j in part.jobs))
            for part in partition(p, 4, seed=5)
        ]

    assert named(problem) == named(other)


def test_pop_answers_are_verified_complete_and_the_bound_is_the_wholes():
    problem = synthetic.openb_like(nodes=200, jobs=2500, seed=6)
    answer = solve(problem, "pop", parts=4, inner="best-fit", executor="serial", time_limit=10)
    assert verify(problem, answer) == []
    assert answer.placed_jobs | answer.unplaced_jobs == {j.name for j in problem.jobs}
    assert answer.bound is not None and answer.bound >= answer.objective
    assert len(answer.stats["part_bounds"]) == 4
    assert answer.stats["partition_time"] >= 0 and answer.stats["parts_time"] >= 0


def test_local_processes_give_the_serial_answer_for_a_deterministic_inner_method():
    problem = synthetic.openb_like(nodes=150, jobs=1500, seed=7)
    serial = solve(problem, "pop", parts=4, inner="fgd", executor="serial", time_limit=20)
    local = solve(problem, "pop", parts=4, inner="fgd", executor="local", time_limit=20)
    assert local.placements == serial.placements and local.unplaced == serial.unplaced
    assert local.stats["executor"] == "local" and serial.stats["executor"] == "serial"


def test_the_repair_pass_places_what_one_part_could_not_hold():
    """A part with a job too big for its own nodes, while another part's nodes are idle."""
    from optalloc import Job, Node

    nodes = (Node("a", cpu=8000, memory=8192, gpus=2), Node("b", cpu=8000, memory=8192, gpus=2, gpu_model="X"))
    jobs = (Job("small", cpu=1000, gpus=1), Job("big", cpu=6000, gpus=2))
    problem = Problem(nodes, jobs)
    answer = solve(problem, "pop", parts=2, inner="best-fit", executor="serial", time_limit=5)
    assert answer.placed_jobs == {"small", "big"}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_parts_as_ray_tasks_on_a_local_runtime_give_the_serial_answer(ray_local):
    problem = synthetic.openb_like(nodes=150, jobs=1500, seed=7)
    serial = solve(problem, "pop", parts=4, inner="fgd", executor="serial", time_limit=30)
    on_ray = solve(problem, "pop", parts=4, inner="fgd", time_limit=30)  # auto: Ray is running here
    assert on_ray.stats["executor"] == "ray"
    assert on_ray.placements == serial.placements and on_ray.unplaced == serial.unplaced


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_driver_connects_to_a_ray_head_started_on_loopback_by_address():
    pytest.importorskip("ray")
    ray_cli = shutil.which("ray")
    assert ray_cli is not None, "the ray command comes with the ray package"
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    # Token authentication off for this loopback head and its drivers: Ray enables it only for drivers that
    # find a local cluster themselves, never for an explicit address (a driver would need RAY_AUTH_MODE=token
    # and the head's token), and this test must not depend on what an earlier test left in the environment.
    env = {**os.environ, "RAY_TMPDIR": folder, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        code = (
            "import optalloc\n"
            "from optalloc.io import synthetic\n"
            "p = synthetic.openb_like(nodes=60, jobs=500, seed=2)\n"
            f"a = optalloc.solve(p, 'pop', parts=2, inner='best-fit', ray_address='127.0.0.1:{port}', time_limit=60)\n"
            "assert a.stats['executor'] == 'ray', a.stats\n"
            "assert optalloc.verify(p, a) == []\n"
            "print('ok', len(a.placements))\n"
        )
        for _ in range(120):  # the head listens within a minute or so
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # this head's process group only, not other Ray runtimes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(folder, ignore_errors=True)
