"""verify() reports each violated rule, with its kind, job, node and resource — and nothing on valid answers."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc import Allocation, Job, Node, Placement, Problem, Unplaced, verify
from optalloc.core import Kind
from optalloc.testing import strategies as ost

GiB = 1024

NODES = (
    Node("n0", cpu=4000, memory=8 * GiB, gpus=2, gpu_model="T4", gpu_memory=16 * GiB, labels={"zone": "a"}),
    Node("n1", cpu=4000, memory=8 * GiB, gpus=2, gpu_model="A100", gpu_memory=16 * GiB, labels={"zone": "b"}),
)
JOBS = (
    Job("train", cpu=1000, memory=1 * GiB, gpus=1, gpu_memory=8 * GiB, replicas=2),
    Job("share", cpu=500, memory=512, gpu_milli=600, gpu_memory=4 * GiB),
    Job("cpu", cpu=500, memory=1 * GiB),
    Job("t4-only", cpu=100, gpus=1, gpu_models={"T4"}),
    Job("zone-a", cpu=100, node_selector={"zone": "a"}),
    Job("spread", cpu=500, replicas=2, placement="spread"),
    Job("single", cpu=500, replicas=2, placement="single-node"),
    Job("pinned", cpu=500, preemptible=False),
    Job("elastic", cpu=100, replicas=3, min_replicas=2),
)
CURRENT = Allocation([Placement("pinned", 0, "n1")], method="current", status="feasible")
PROBLEM = Problem(NODES, JOBS, CURRENT)

VALID = (
    Placement("train", 0, "n0", (0,), 1000),
    Placement("train", 1, "n1", (0,), 1000),
    Placement("share", 0, "n0", (1,), 600),
    Placement("cpu", 0, "n1"),
    Placement("zone-a", 0, "n0"),
    Placement("spread", 0, "n0"),
    Placement("spread", 1, "n1"),
    Placement("single", 0, "n1"),
    Placement("single", 1, "n1"),
    Placement("pinned", 0, "n1"),
    Placement("elastic", 0, "n0"),
    Placement("elastic", 1, "n1"),
)
VALID_UNPLACED = (Unplaced("t4-only", "insufficient capacity"),)


def allocation(placements=VALID, unplaced=VALID_UNPLACED) -> Allocation:
    return Allocation(tuple(placements), tuple(unplaced), method="hand-made", status="feasible")


def with_replaced(name: str, index: int, **changes) -> Allocation:
    """The valid allocation with placement (job ``name``, replica ``index``) changed."""
    out = [dataclasses.replace(p, **changes) if (p.job, p.replica) == (name, index) else p for p in VALID]
    return allocation(out)


def without(job: str) -> list[Placement]:
    return [p for p in VALID if p.job != job]


def only(kind: Kind, problem: Problem, answer: Allocation):
    """The violations, after checking they are all of ``kind``."""
    violations = verify(problem, answer)
    assert violations, f"expected {kind.value}, verify found nothing"
    assert {v.kind for v in violations} == {kind}, [str(v) for v in violations]
    return violations


# Valid answers report nothing ------------------------------------------------------------------------
def test_hand_made_valid_allocation_has_no_violation():
    assert verify(PROBLEM, allocation()) == []


def test_everything_unplaced_except_the_pinned_job_is_valid():
    unplaced = [Unplaced(j.name, "not selected") for j in JOBS if j.name != "pinned"]
    assert verify(PROBLEM, allocation([Placement("pinned", 0, "n1")], unplaced)) == []


def test_elastic_job_at_full_size_and_share_sum_of_exactly_1000_are_valid():
    placements = [*without("share"), Placement("elastic", 2, "n0")]
    problem = PROBLEM.replace(jobs=(*JOBS, Job("fill", gpu_milli=400)))
    placements += [Placement("share", 0, "n0", (1,), 600), Placement("fill", 0, "n0", (1,), 400)]
    assert verify(problem, allocation(placements)) == []


def test_empty_problem_and_empty_allocation_are_valid():
    assert verify(Problem([], []), Allocation()) == []


def test_gpus_held_by_unknown_jobs_on_an_empty_problem_are_reported_not_crashed_on():
    """Found by the file fuzzer: GPU entries whose job the problem does not have (no job at all here)."""
    kinds = {v.kind for v in verify(Problem([], []), allocation([Placement("j0", 0, "n0", (0,), 0)]))}
    assert kinds == {Kind.UNKNOWN_JOB}


# One test per kind ------------------------------------------------------------------------------------
def test_unknown_job_in_placements_names_the_job_and_node():
    (v,) = only(Kind.UNKNOWN_JOB, PROBLEM, allocation([*VALID, Placement("ghost", 0, "n0")]))
    assert (v.job, v.node) == ("ghost", "n0")


def test_unknown_job_in_unplaced_names_the_job():
    (v,) = only(Kind.UNKNOWN_JOB, PROBLEM, allocation(unplaced=[*VALID_UNPLACED, Unplaced("ghost", "x")]))
    assert v.job == "ghost"


def test_unknown_node_names_the_job_and_node():
    (v,) = only(Kind.UNKNOWN_NODE, PROBLEM, allocation([*VALID, Placement("cpu", 0, "n9")]))
    assert (v.job, v.node) == ("cpu", "n9")


def test_job_placed_only_on_an_unknown_node_is_not_also_reported_missing():
    only(Kind.UNKNOWN_NODE, PROBLEM, allocation([*without("cpu"), Placement("cpu", 0, "n9")]))


def test_replica_index_out_of_range():
    (v,) = only(Kind.REPLICA_RANGE, PROBLEM, with_replaced("train", 1, replica=2))
    assert (v.job, v.node) == ("train", "n1")
    assert "0..1" in v.message


def test_duplicate_replica_names_the_job():
    # A third placement repeating replica 0 keeps two distinct replicas: the gang stays complete.
    (v,) = only(Kind.DUPLICATE_REPLICA, PROBLEM, allocation([*VALID, Placement("elastic", 0, "n0")]))
    assert v.job == "elastic"


def test_duplicate_unplaced_names_the_job():
    (v,) = only(Kind.DUPLICATE_UNPLACED, PROBLEM, allocation(unplaced=VALID_UNPLACED * 2))
    assert v.job == "t4-only"


def test_placed_and_unplaced_names_the_job():
    (v,) = only(Kind.PLACED_AND_UNPLACED, PROBLEM, allocation(unplaced=[*VALID_UNPLACED, Unplaced("cpu", "x")]))
    assert v.job == "cpu"


def test_job_neither_placed_nor_unplaced_is_missing():
    (v,) = only(Kind.MISSING_JOB, PROBLEM, allocation(unplaced=()))
    assert v.job == "t4-only"


def test_cpu_over_capacity_names_node_and_resource():
    problem = PROBLEM.replace(jobs=(*JOBS, Job("hog", cpu=2000)))
    (v,) = only(Kind.CPU, problem, allocation([*VALID, Placement("hog", 0, "n0")]))
    assert (v.node, v.resource) == ("n0", "cpu")
    assert "4200" in v.message and "capacity 4000" in v.message


def test_memory_over_capacity_names_node_and_resource():
    problem = PROBLEM.replace(jobs=(*JOBS, Job("hog", memory=7 * GiB)))
    (v,) = only(Kind.MEMORY, problem, allocation([*VALID, Placement("hog", 0, "n0")]))
    assert (v.node, v.resource) == ("n0", "memory")


def test_gpu_index_beyond_the_node_gpus():
    (v,) = only(Kind.GPU_INDEX, PROBLEM, with_replaced("train", 0, gpus=(2,)))
    assert (v.job, v.node, v.resource) == ("train", "n0", "gpu")


def test_gpu_share_with_the_wrong_milli_is_a_shape_mismatch():
    (v,) = only(Kind.GPU_SHAPE, PROBLEM, with_replaced("share", 0, gpu_milli=500))
    assert (v.job, v.node, v.resource) == ("share", "n0", "gpu")


def test_whole_gpu_job_holding_too_few_gpus_is_a_shape_mismatch():
    problem = PROBLEM.replace(jobs=(*JOBS, Job("pair", gpus=2)))
    only(Kind.GPU_SHAPE, problem, allocation([*VALID, Placement("pair", 0, "n1", (1,), 1000)]))


def test_cpu_only_replica_holding_a_gpu_is_a_shape_mismatch():
    only(Kind.GPU_SHAPE, PROBLEM, with_replaced("cpu", 0, gpus=(1,), gpu_milli=1000))


def test_repeated_gpu_index_is_a_shape_mismatch():
    # The repeated GPU also counts twice towards exclusivity: reported as both.
    problem = PROBLEM.replace(jobs=(*JOBS, Job("pair", gpus=2)))
    kinds = {v.kind for v in verify(problem, allocation([*VALID, Placement("pair", 0, "n1", (1, 1), 1000)]))}
    assert Kind.GPU_SHAPE in kinds


def test_two_whole_gpu_replicas_on_one_gpu_are_not_exclusive():
    (v,) = only(Kind.GPU_EXCLUSIVE, PROBLEM, with_replaced("train", 1, node="n0", gpus=(0,)))
    assert (v.job, v.node, v.resource) == ("train", "n0", "gpu")


def test_share_on_a_whole_gpu_is_not_exclusive():
    only(Kind.GPU_EXCLUSIVE, PROBLEM, with_replaced("share", 0, gpus=(0,)))


def test_shares_over_1000_on_one_gpu():
    problem = PROBLEM.replace(jobs=(*JOBS, Job("more", gpu_milli=401)))
    (v,) = only(Kind.GPU_SHARE, problem, allocation([*VALID, Placement("more", 0, "n0", (1,), 401)]))
    assert (v.node, v.resource) == ("n0", "gpu")
    assert "1001" in v.message


def test_gpu_memory_over_capacity_on_one_gpu():
    problem = PROBLEM.replace(jobs=(*JOBS, Job("mem", gpu_milli=100, gpu_memory=13 * GiB)))
    (v,) = only(Kind.GPU_MEMORY, problem, allocation([*VALID, Placement("mem", 0, "n0", (1,), 100)]))
    assert (v.node, v.resource) == ("n0", "gpu_memory")


def test_gpu_memory_need_on_a_node_that_states_none():
    nodes = (dataclasses.replace(NODES[0], gpu_memory=0), NODES[1])
    only(Kind.GPU_MEMORY, PROBLEM.replace(nodes=nodes), allocation())


def test_gpu_model_not_allowed_names_job_node_and_resource():
    (v,) = only(Kind.GPU_MODEL, PROBLEM, allocation([*VALID, Placement("t4-only", 0, "n1", (1,), 1000)], ()))
    assert (v.job, v.node, v.resource) == ("t4-only", "n1", "gpu_model")


def test_node_selector_not_matched_names_job_node_and_label():
    (v,) = only(Kind.NODE_SELECTOR, PROBLEM, with_replaced("zone-a", 0, node="n1"))
    assert (v.job, v.node, v.resource) == ("zone-a", "n1", "labels")
    assert "zone" in v.message


def test_gang_with_a_replica_missing_is_incomplete():
    (v,) = only(Kind.GANG, PROBLEM, allocation([p for p in VALID if (p.job, p.replica) != ("train", 1)]))
    assert v.job == "train"
    assert "1 of 2" in v.message


def test_elastic_job_below_its_minimum_is_incomplete():
    (v,) = only(Kind.GANG, PROBLEM, allocation([p for p in VALID if (p.job, p.replica) != ("elastic", 1)]))
    assert "1 of 2" in v.message


def test_single_node_job_spanning_nodes():
    (v,) = only(Kind.SINGLE_NODE, PROBLEM, with_replaced("single", 1, node="n0"))
    assert v.job == "single"


def test_spread_job_sharing_a_node():
    (v,) = only(Kind.SPREAD, PROBLEM, with_replaced("spread", 1, node="n0"))
    assert v.job == "spread"


def test_non_preemptible_job_moved():
    (v,) = only(Kind.NOT_PREEMPTIBLE, PROBLEM, with_replaced("pinned", 0, node="n0"))
    assert v.job == "pinned"


def test_non_preemptible_job_rebound_to_another_gpu_on_its_node():
    problem = PROBLEM.replace(
        jobs=(*JOBS, Job("pinned-gpu", gpus=1, preemptible=False)),
        current=Allocation([*CURRENT.placements, Placement("pinned-gpu", 0, "n1", (1,), 1000)]),
    )
    moved = allocation([*VALID, Placement("pinned-gpu", 0, "n1", (1,), 1000)])
    assert verify(problem, moved) == []
    train_elsewhere = [p if (p.job, p.replica) != ("train", 1) else dataclasses.replace(p, gpus=(1,)) for p in VALID]
    (v,) = only(
        Kind.NOT_PREEMPTIBLE, problem, allocation([*train_elsewhere, Placement("pinned-gpu", 0, "n1", (0,), 1000)])
    )
    assert v.job == "pinned-gpu"


def test_non_preemptible_job_stopped():
    answer = allocation(without("pinned"), [*VALID_UNPLACED, Unplaced("pinned", "not selected")])
    only(Kind.NOT_PREEMPTIBLE, PROBLEM, answer)


def test_preemptible_running_job_may_move():
    problem = PROBLEM.replace(jobs=(*JOBS[:7], dataclasses.replace(JOBS[7], preemptible=True), JOBS[8]))
    assert verify(problem, with_replaced("pinned", 0, node="n0")) == []


HAND_MADE_KINDS = {
    Kind.UNKNOWN_JOB,
    Kind.UNKNOWN_NODE,
    Kind.REPLICA_RANGE,
    Kind.DUPLICATE_REPLICA,
    Kind.DUPLICATE_UNPLACED,
    Kind.PLACED_AND_UNPLACED,
    Kind.MISSING_JOB,
    Kind.CPU,
    Kind.MEMORY,
    Kind.GPU_INDEX,
    Kind.GPU_SHAPE,
    Kind.GPU_EXCLUSIVE,
    Kind.GPU_SHARE,
    Kind.GPU_MEMORY,
    Kind.GPU_MODEL,
    Kind.NODE_SELECTOR,
    Kind.GANG,
    Kind.SINGLE_NODE,
    Kind.SPREAD,
    Kind.NOT_PREEMPTIBLE,
}


def test_every_kind_has_a_hand_made_test_above():
    assert set(Kind) == HAND_MADE_KINDS, "a new Kind needs a hand-made bad allocation in this file"


def test_violation_str_starts_with_its_kind():
    (v,) = verify(PROBLEM, allocation(unplaced=()))
    assert str(v).startswith("job neither placed nor unplaced: ")


# Kinds verify reports per node or GPU, naming the node (and perhaps another job on it) rather than the culprit.
NODE_LEVEL_KINDS = {Kind.CPU, Kind.MEMORY, Kind.GPU_EXCLUSIVE, Kind.GPU_SHARE, Kind.GPU_MEMORY}


# Properties: generated allocations ----------------------------------------------------------------------
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data(), ost.problems(max_jobs=6, max_nodes=3, with_running=True))
def test_verify_accepts_every_generated_valid_allocation(data, problem):
    answer = data.draw(ost.allocations(problem))
    assert verify(problem, answer) == []


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data(), ost.problems(max_jobs=6, max_nodes=3, with_running=True))
def test_verify_reports_exactly_the_kind_each_broken_allocation_breaks(data, problem):
    broken = data.draw(ost.allocations(problem, valid=False))
    violations = verify(problem, broken.allocation)
    assert {v.kind for v in violations} == {broken.kind}, (broken.detail, [str(v) for v in violations])
    if broken.kind not in NODE_LEVEL_KINDS:
        assert broken.job in {v.job for v in violations}
