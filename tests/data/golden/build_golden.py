"""Build the golden instances: tiny problems with known optima, for the conformance suite.

Run ``python tests/data/golden/build_golden.py`` after changing a builder (or the objective): it
writes ``NAME.json`` (the problem, optalloc's problem file format) and ``NAME.optimum.json`` beside
it. The optima come from :func:`optalloc.testing.brute_force` — exhaustive search, independent of
the engines. ``optimum`` lets running jobs move (at the migration cost) or stop;
``optimum_kept`` keeps them where they run (the engines' default, ``allow_migration=False``);
both are equal without running jobs. ``witness`` is one allocation reaching ``optimum``.

Each builder says what it is meant to catch. tests/test_conformance.py checks that the files are
what these builders and the brute force produce today.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from optalloc import Allocation, Job, Node, ObjectiveWeights, Placement, Problem
from optalloc.io import allocation_to_dict, write_problem
from optalloc.testing import brute_force

HERE = Path(__file__).resolve().parent
GiB = 1024


def whole_gpu_knapsack() -> Problem:
    """Whole GPUs 3,3,2,2,1 on two 4-GPU nodes: first fit strands GPUs; 3+1 and 2+2 fill both nodes."""
    nodes = [Node(f"n{i}", cpu=16000, memory=64 * GiB, gpus=4, gpu_model="T4") for i in range(2)]
    sizes = [3, 3, 2, 2, 1]
    jobs = [Job(f"g{k}", cpu=1000, memory=4 * GiB, gpus=g, arrival=k) for k, g in enumerate(sizes)]
    return Problem(nodes, jobs)


def gpu_share_packing() -> Problem:
    """Shares 700,500,500,300,300 on two GPUs: 700+300 and 500+500 fill both, one 300 waits."""
    nodes = [Node("n0", cpu=16000, memory=64 * GiB, gpus=2, gpu_model="T4")]
    shares = [700, 500, 500, 300, 300]
    jobs = [Job(f"s{k}", cpu=500, memory=1 * GiB, gpu_milli=m, arrival=k) for k, m in enumerate(shares)]
    return Problem(nodes, jobs)


def fragmentation_tie_break() -> Problem:
    """Two 300-milli shares: on one GPU (one partial GPU) beats two GPUs (two partial GPUs)."""
    nodes = [Node("n0", cpu=8000, memory=16 * GiB, gpus=2, gpu_model="T4")]
    jobs = [Job("a", cpu=500, gpu_milli=300), Job("b", cpu=500, gpu_milli=300)]
    return Problem(nodes, jobs)


def gang_all_or_none() -> Problem:
    """A 3x1-GPU gang must be whole or out; with the 1-GPU job it beats the 2-GPU job."""
    nodes = [Node(f"n{i}", cpu=8000, memory=32 * GiB, gpus=2, gpu_model="A100") for i in range(2)]
    jobs = [
        Job("big", cpu=1000, memory=2 * GiB, gpus=2, arrival=0),
        Job("gang", cpu=1000, memory=2 * GiB, gpus=1, replicas=3, arrival=1),
        Job("small", cpu=1000, memory=2 * GiB, gpus=1, arrival=2),
    ]
    return Problem(nodes, jobs)


def elastic_with_priority() -> Problem:
    """An elastic 2..4 x 1-GPU job yields two GPUs to a high-priority 2-GPU job."""
    nodes = [Node("n0", cpu=16000, memory=64 * GiB, gpus=4, gpu_model="A100")]
    jobs = [
        Job("elastic", cpu=1000, memory=2 * GiB, gpus=1, replicas=4, min_replicas=2, arrival=0),
        Job("urgent", cpu=1000, memory=2 * GiB, gpus=2, priority=1, arrival=1),
    ]
    return Problem(nodes, jobs)


def models_and_selectors() -> Problem:
    """GPU models and zone selectors: the unconstrained job must leave the A100 to the job that needs it."""
    nodes = [
        Node("t4", cpu=8000, memory=32 * GiB, gpus=1, gpu_model="T4", labels={"zone": "a"}),
        Node("a100", cpu=8000, memory=32 * GiB, gpus=1, gpu_model="A100", labels={"zone": "b"}),
        Node("cpu", cpu=4000, memory=8 * GiB, labels={"zone": "a"}),
    ]
    jobs = [
        Job("any-gpu", cpu=1000, memory=2 * GiB, gpus=1, arrival=0),
        Job("needs-a100", cpu=1000, memory=2 * GiB, gpus=1, gpu_models={"A100"}, arrival=1),
        Job("zone-a", cpu=3000, memory=4 * GiB, node_selector={"zone": "a"}, replicas=2, arrival=2),
        Job("zone-b-share", cpu=500, memory=1 * GiB, gpu_milli=400, node_selector={"zone": "b"}, arrival=3),
    ]
    return Problem(nodes, jobs)


def spread_and_single_node() -> Problem:
    """Spread needs distinct nodes, single-node needs one node with room for the whole gang."""
    nodes = [
        Node("big", cpu=16000, memory=64 * GiB, gpus=4, gpu_model="A100"),
        Node("s0", cpu=8000, memory=32 * GiB, gpus=2, gpu_model="A100"),
        Node("s1", cpu=8000, memory=32 * GiB, gpus=2, gpu_model="A100"),
    ]
    jobs = [
        Job("spread", cpu=1000, memory=2 * GiB, gpus=2, replicas=2, placement="spread", arrival=0),
        Job("single", cpu=1000, memory=2 * GiB, gpus=2, replicas=2, placement="single-node", arrival=1),
        Job("filler", cpu=1000, memory=2 * GiB, gpus=1, replicas=2, arrival=2),
    ]
    return Problem(nodes, jobs)


def pack_prefers_one_node() -> Problem:
    """A packed CPU-only gang on one node saves the extra-node penalty; spreading it costs 1."""
    nodes = [Node(f"n{i}", cpu=4000, memory=8 * GiB) for i in range(2)]
    jobs = [
        Job("packed", cpu=1000, memory=1 * GiB, replicas=3, placement="pack"),
        Job("side", cpu=1000, memory=1 * GiB),
    ]
    return Problem(nodes, jobs)


def memory_and_gpu_memory() -> Problem:
    """Host memory and per-GPU memory bind before CPU or GPU count do; a 0 GPU memory node hosts no such job."""
    nodes = [
        Node("m16", cpu=16000, memory=16 * GiB, gpus=2, gpu_model="T4", gpu_memory=16 * GiB),
        Node("m0", cpu=16000, memory=64 * GiB, gpus=2, gpu_model="T4"),
    ]
    jobs = [
        Job("fat", cpu=1000, memory=12 * GiB, gpus=1, gpu_memory=8 * GiB),
        Job("lean-a", cpu=1000, memory=4 * GiB, gpu_milli=500, gpu_memory=10 * GiB),
        Job("lean-b", cpu=1000, memory=4 * GiB, gpu_milli=500, gpu_memory=10 * GiB),
        Job("cpu-only", cpu=2000, memory=40 * GiB),
    ]
    return Problem(nodes, jobs)


def priorities_outweigh_size() -> Problem:
    """One priority level up is worth ten times more: a 1-GPU urgent job beats a 4-GPU batch job."""
    nodes = [Node("n0", cpu=16000, memory=64 * GiB, gpus=4, gpu_model="A100")]
    jobs = [
        Job("batch", cpu=1000, memory=2 * GiB, gpus=4, priority=0),
        Job("urgent", cpu=1000, memory=2 * GiB, gpus=1, priority=5),
        Job("notebook", cpu=500, memory=1 * GiB, gpu_milli=250, priority=0),
    ]
    return Problem(nodes, jobs)


def running_jobs() -> Problem:
    """What runs now: a pinned job stays; moving the preemptible one lets an urgent gang in."""
    nodes = [Node(f"n{i}", cpu=8000, memory=32 * GiB, gpus=2, gpu_model="A100") for i in range(2)]
    jobs = [
        Job("pinned", cpu=1000, memory=2 * GiB, gpus=1, preemptible=False),
        Job("movable", cpu=1000, memory=2 * GiB, gpus=1),
        Job("urgent", cpu=1000, memory=2 * GiB, gpus=2, priority=1),
        Job("cpu-runner", cpu=2000, memory=4 * GiB),
    ]
    current = Allocation(
        [
            Placement("pinned", 0, "n0", (0,), 1000),
            Placement("movable", 0, "n1", (0,), 1000),
            Placement("cpu-runner", 0, "n1"),
        ],
        method="current",
        status="feasible",
    )
    return Problem(nodes, jobs, current)


def elastic_single_node() -> Problem:
    """An elastic single-node job grows to all the replicas one node can hold (3 of 3 on the 4-GPU node)."""
    nodes = [
        Node("n0", cpu=16000, memory=64 * GiB, gpus=4, gpu_model="A100"),
        Node("n1", cpu=16000, memory=64 * GiB, gpus=1, gpu_model="A100"),
    ]
    jobs = [Job("elastic", cpu=1000, memory=2 * GiB, gpus=1, replicas=3, min_replicas=1, placement="single-node")]
    return Problem(nodes, jobs)


def pinned_gang_across_nodes() -> Problem:
    """A pinned two-node gang pays its extra-node term as a constant; the free GPUs still fill up."""
    nodes = [Node(f"n{i}", cpu=8000, memory=32 * GiB, gpus=2, gpu_model="A100") for i in range(2)]
    jobs = [
        Job("pinned", cpu=1000, memory=2 * GiB, gpus=1, replicas=2, preemptible=False),
        Job("new", cpu=1000, memory=2 * GiB, gpus=1, replicas=2, placement="spread"),
    ]
    current = Allocation(
        [Placement("pinned", 0, "n0", (0,), 1000), Placement("pinned", 1, "n1", (0,), 1000)],
        method="current",
        status="feasible",
    )
    return Problem(nodes, jobs, current)


def movable_gang_across_nodes() -> Problem:
    """A running 3x1-GPU gang over two nodes: staying put is free; any move costs 200 per replica."""
    nodes = [Node(f"n{i}", cpu=1000, memory=1 * GiB, gpus=2, gpu_model="A100") for i in range(2)]
    jobs = [Job("idle"), Job("gang", gpus=1, replicas=3)]
    current = Allocation(
        [
            Placement("gang", 0, "n0", (0,), 1000),
            Placement("gang", 1, "n0", (1,), 1000),
            Placement("gang", 2, "n1", (0,), 1000),
        ],
        method="current",
        status="feasible",
    )
    return Problem(nodes, jobs, current)


def one_point_decides() -> Problem:
    """A 1-point secondary term on a 20,040 objective: a solver stopping at a 1e-4 relative gap misses it."""
    nodes = [Node(f"n{i}", cpu=5000, memory=1 * GiB, gpus=2, gpu_model="A100", gpu_memory=16 * GiB) for i in range(3)]
    jobs = [
        Job("pair", cpu=2500, replicas=2),
        Job("idle"),
        Job("small", cpu=250),
        Job("urgent", gpus=1, replicas=2, min_replicas=1, priority=1),
    ]
    return Problem(nodes, jobs)


def unplaceable_jobs() -> Problem:
    """Jobs no node can host (too many GPUs, an absent GPU model, an unknown zone) are left out, the rest placed."""
    nodes = [Node("n0", cpu=8000, memory=16 * GiB, gpus=2, gpu_model="T4", labels={"zone": "a"})]
    jobs = [
        Job("too-wide", gpus=4),
        Job("wrong-model", gpus=1, gpu_models={"H100"}),
        Job("wrong-zone", cpu=1000, node_selector={"zone": "z"}),
        Job("fits", cpu=1000, memory=1 * GiB, gpus=2),
    ]
    return Problem(nodes, jobs, gpu_models={"H100", "T4"})


def lexicographic_weights() -> Problem:
    """Lexicographic mode: the primary value alone, partial GPUs and extra nodes not subtracted."""
    nodes = [Node(f"n{i}", cpu=4000, memory=8 * GiB, gpus=1, gpu_model="T4") for i in range(2)]
    jobs = [
        Job("pair", cpu=1000, memory=1 * GiB, gpu_milli=600, replicas=2),
        Job("third", cpu=1000, memory=1 * GiB, gpu_milli=300),
    ]
    return Problem(nodes, jobs, weights=ObjectiveWeights(lexicographic=True))


def custom_weights() -> Problem:
    """Non-default weights: CPU-only replicas worth 300 milli-GPU, priority base 2, no fragmentation term."""
    nodes = [Node("n0", cpu=4000, memory=8 * GiB, gpus=1, gpu_model="T4")]
    jobs = [
        Job("cpu-heavy", cpu=3000, memory=2 * GiB, replicas=2, min_replicas=1),
        Job("share", cpu=2000, memory=1 * GiB, gpu_milli=200, priority=1),
    ]
    weights = ObjectiveWeights(cpu_only_value=300, priority_base=2, fragmentation=0)
    return Problem(nodes, jobs, weights=weights)


def no_nodes() -> Problem:
    """An empty cluster: every job is left out, the optimum is 0."""
    return Problem([], [Job("a", cpu=1000), Job("b", gpus=1)])


def no_jobs() -> Problem:
    """Nothing to place: the optimum is 0 and the allocation empty."""
    return Problem([Node("n0", cpu=1000, memory=1 * GiB, gpus=1, gpu_model="T4")], [])


BUILDERS: dict[str, Callable[[], Problem]] = {
    "whole-gpu-knapsack": whole_gpu_knapsack,
    "gpu-share-packing": gpu_share_packing,
    "fragmentation-tie-break": fragmentation_tie_break,
    "gang-all-or-none": gang_all_or_none,
    "elastic-with-priority": elastic_with_priority,
    "models-and-selectors": models_and_selectors,
    "spread-and-single-node": spread_and_single_node,
    "pack-prefers-one-node": pack_prefers_one_node,
    "memory-and-gpu-memory": memory_and_gpu_memory,
    "priorities-outweigh-size": priorities_outweigh_size,
    "running-jobs": running_jobs,
    "elastic-single-node": elastic_single_node,
    "pinned-gang-across-nodes": pinned_gang_across_nodes,
    "movable-gang-across-nodes": movable_gang_across_nodes,
    "one-point-decides": one_point_decides,
    "unplaceable-jobs": unplaceable_jobs,
    "lexicographic-weights": lexicographic_weights,
    "custom-weights": custom_weights,
    "no-nodes": no_nodes,
    "no-jobs": no_jobs,
}


def optimum_record(problem: Problem) -> dict[str, object]:
    """What NAME.optimum.json holds for ``problem``."""
    free = brute_force(problem)
    kept = brute_force(problem, keep_running=True)
    return {
        "optimum": free.objective,
        "optimum_kept": kept.objective,
        "witness": allocation_to_dict(free.replace(stats={})),
    }


def main(out: Path = HERE) -> None:
    for name, build in BUILDERS.items():
        problem = build()
        write_problem(problem, out / f"{name}.json")
        record = {"description": (build.__doc__ or "").strip(), **optimum_record(problem)}
        (out / f"{name}.optimum.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: optimum {record['optimum']}, kept {record['optimum_kept']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
