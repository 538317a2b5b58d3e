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

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from optalloc import Allocation, Problem, solve, verify
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


# Fast paths and the budget (issue 18: 50,000 nodes x 400,000 jobs within 60 s) ---------------------------


def test_name_hashes_are_pinned_and_do_not_depend_on_the_other_names():
    from optalloc.pop import hash_names

    # Pinned: the partition must be the same in every process, on every machine, in every release.
    assert hash_names(["a", "bb", "ccc"], seed=0).tolist() == [
        2471312243346218224,
        2795175898397682569,
        5818926864140312095,
    ]
    assert hash_names(["a"], seed=1).tolist() == [5697177333007155704]
    names = ["job-1", "é漢字", "x" * 253, "job-10", "a"]
    batch = hash_names(names, seed=7)
    assert batch.tolist() == [int(hash_names([n], seed=7)[0]) for n in names]
    assert (batch >= 0).all() and len(set(batch.tolist())) == len(names)
    assert hash_names(["job-1"], seed=8)[0] != batch[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ost.problems(min_jobs=1, max_jobs=8, max_nodes=6, with_running=True))
def test_a_subset_is_the_problem_built_and_validated_the_slow_way(problem: Problem):
    _ = problem.capacity, problem.demand, problem.job_gpus  # views already built: the subset slices them
    for part in partition(problem, 2, seed=1):
        fast = problem.subset(part.nodes, part.jobs)
        names = {problem.jobs[j].name for j in part.jobs}
        running = tuple(p for p in problem.current.placements if p.job in names) if problem.current else ()
        slow = Problem(
            tuple(problem.nodes[n] for n in part.nodes),
            tuple(problem.jobs[j] for j in part.jobs),
            current=Allocation(running, method="current", status="feasible") if running else None,
            weights=problem.weights,
            gpu_models=problem.gpu_models,
        )
        assert fast.nodes == slow.nodes and fast.jobs == slow.jobs and fast.gpu_models == slow.gpu_models
        assert (fast.current.placements if fast.current else ()) == running
        for view in ("capacity", "node_model", "node_gpu_memory", "demand", "job_gpus", "replica_value"):
            assert np.array_equal(getattr(fast, view), getattr(slow, view)), view


def test_a_subset_checks_its_positions_and_what_runs():
    from optalloc import Job, Node, Placement, ProblemError

    nodes = (Node("a", cpu=4000, memory=4096, gpus=1), Node("b", cpu=4000, memory=4096, gpus=1))
    jobs = (Job("x", cpu=1000, gpus=1), Job("y", cpu=1000))
    running = Allocation((Placement("x", 0, "a", (0,), 1000),), method="current", status="feasible")
    problem = Problem(nodes, jobs, current=running)
    assert problem.subset([0], [0]).current.placements == running.placements
    assert problem.subset([1], [1]).current is None
    with pytest.raises(ProblemError, match="runs job 'x'"):
        problem.subset([1], [0])
    for rows in ([1, 0], [0, 0], [2], [-1]):
        with pytest.raises(ProblemError, match="ascending positions"):
            problem.subset(rows, [])


def test_the_parts_time_is_what_is_left_after_the_stages_that_follow_them_stretched_by_the_pace():
    from optalloc.core.budget import Budget
    from optalloc.pop import PART_MARGIN, WAVE_START, after_parts, schedule, shipping

    problem = synthetic.openb_like(nodes=100, jobs=800, seed=2)
    now = [0.0]
    budget = Budget(10.0, clock=lambda: now[0])
    before = time.time()
    plan = schedule(problem, 8, 2, budget)  # four waves of two
    ship = shipping(problem, 8)
    assert plan.per_part == pytest.approx((10.0 - WAVE_START - after_parts(problem) - 4 * ship) / 4)
    ends = np.array(plan.ends)
    first = before + WAVE_START + (1 - PART_MARGIN) * plan.per_part  # a part ends a little early
    assert first <= ends[0] <= first + (time.time() - before)
    assert np.allclose(np.diff(ends[::2]), plan.per_part + ship)  # one wave after the other
    assert np.allclose(ends[::2], ends[1::2])  # the two parts of a wave end together
    budget.observe_pace(1.0, 3.0)  # the machine runs three times slower now: three times the reserves
    slow = schedule(problem, 8, 2, budget)
    assert slow.per_part == pytest.approx((10.0 - 3 * (WAVE_START + after_parts(problem) + 4 * ship)) / 4)
    assert schedule(problem, 8, 2, Budget(None)).per_part is None


def test_a_part_that_starts_late_gets_what_is_left_of_its_wave():
    from optalloc.pop import MIN_PART, solve_part

    problem = synthetic.openb_like(nodes=20, jobs=100, seed=3)
    options = {"time_limit": 5.0, "verify": False}
    assert solve_part(problem, "best-fit", options).stats["part_time_limit"] == 5.0
    assert solve_part(problem, "best-fit", options, time.time() + 60).stats["part_time_limit"] == 5.0
    late = solve_part(problem, "best-fit", options, time.time() + 1.0).stats["part_time_limit"]
    assert 0.5 < late <= 1.0
    assert solve_part(problem, "best-fit", options, time.time() - 1).stats["part_time_limit"] == MIN_PART


def test_pop_pauses_garbage_collection_only_while_it_runs():
    import gc

    from optalloc.pop import collection_paused

    problem = synthetic.openb_like(nodes=40, jobs=300, seed=4)
    assert gc.isenabled()
    solve(problem, "pop", parts=2, inner="best-fit", executor="serial", time_limit=5)
    assert gc.isenabled()
    with collection_paused() as was:
        assert was and not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused() as was:
            assert not was
        assert not gc.isenabled()  # as it was
    finally:
        gc.enable()


def test_the_repair_tries_a_class_that_no_longer_fits_once(monkeypatch):
    from optalloc import Job, Node, Reason, SolveOptions, Unplaced, heuristics
    from optalloc.core.budget import Budget
    from optalloc.pop import _repair

    nodes = (Node("a", cpu=4000, memory=4096, gpus=1), Node("b", cpu=4000, memory=4096, gpus=1))
    jobs = (*(Job(f"j{i}", cpu=1000, gpus=1) for i in range(10)), Job("cpu", cpu=500))
    problem = Problem(nodes, jobs)
    left_out = Allocation((), unplaced=tuple(Unplaced(j.name, Reason.INSUFFICIENT_CAPACITY) for j in jobs))
    calls = []
    place = heuristics.Placer.place

    def counted(self, job):  # type: ignore[no-untyped-def]
        calls.append(job)
        return place(self, job)

    monkeypatch.setattr(heuristics.Placer, "place", counted)
    repaired = _repair(problem, left_out, SolveOptions(), Budget(10))
    assert repaired.placed_jobs == {"j0", "j1", "cpu"}
    assert len(calls) == 4  # two GPU jobs placed, one tried in vain (its class is full), the CPU-only job
    assert {u.job for u in repaired.unplaced} == {j.name for j in jobs} - repaired.placed_jobs


def test_cluster_state_of_an_allocation_equals_applying_its_placements_one_by_one():
    from optalloc.core import ClusterState

    problem = synthetic.openb_like(nodes=60, jobs=500, seed=5)
    answer = solve(problem, "best-fit", time_limit=None)
    fast = ClusterState.of(problem, answer)
    slow = ClusterState.empty(problem)
    for p in answer.placements:
        slow.apply(p)
    for name in ("cpu", "memory", "gpu", "gpu_mem"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
