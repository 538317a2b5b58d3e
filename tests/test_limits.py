"""Size limits: a small input never makes optalloc build huge arrays or run for hours (docs/limits.md).

Each limit is checked before any array or object list of that size exists, so these tests are fast:
a refusal that came after the work would not finish here.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from optalloc import LIMITS, Allocation, Job, Node, Placement, Problem, ProblemError
from optalloc.core.errors import short_repr
from optalloc.io import gavel, synthetic
from optalloc.io.problem_file import problem_from_dict


def test_a_node_with_a_billion_gpus_is_refused_naming_the_limit():
    with pytest.raises(ProblemError, match=r"^gpus: 1000000000 is beyond the limit of 64 \(docs/limits.md\)$"):
        Node("n0", gpus=10**9)
    with pytest.raises(ProblemError, match=r"^nodes\[0\]\.gpus: 1000000000 is beyond the limit of 64"):
        problem_from_dict({"nodes": [{"name": "n0", "gpus": 10**9}]})


@pytest.mark.parametrize("value", [1e30, 2**70, 10**4000])
def test_integers_beyond_64_bit_arrays_are_refused_in_every_quantity(value):
    for kwargs in ({"cpu": value}, {"memory": value}, {"gpu_memory": value}):
        with pytest.raises(ProblemError, match=r"is beyond the limit of 2\*\*40"):
            Node("n", **kwargs)
        with pytest.raises(ProblemError, match=r"is beyond the limit of 2\*\*40"):
            Job("j", **kwargs)
    with pytest.raises(ProblemError, match=r"priority: .* is beyond the limit of 1,000,000,000"):
        Job("j", priority=-value)


def test_replicas_and_times_have_limits():
    with pytest.raises(ProblemError, match=r"replicas: 1000000000 is beyond the limit of 10,000"):
        Job("j", replicas=10**9)
    with pytest.raises(ProblemError, match=r"min_replicas: 20000 is beyond the limit of 10,000"):
        Job("j", replicas=10, min_replicas=20_000)
    with pytest.raises(ProblemError, match=r"arrival: 1e\+300 is beyond the limit of 1e\+12"):
        Job("j", arrival=1e300)
    with pytest.raises(ProblemError, match=r"duration: .* is not a finite number"):
        Job("j", duration=10**400)


def test_problem_sizes_are_checked_before_any_view_is_built():
    job = Job("j", replicas=LIMITS.replicas)
    jobs = [
        job.__class__(f"j{i}", replicas=LIMITS.replicas) for i in range(LIMITS.total_replicas // LIMITS.replicas + 1)
    ]
    with pytest.raises(ProblemError, match=r"^jobs: 2010000 replicas in all are more than the limit of 2,000,000"):
        Problem((), tuple(jobs))
    many = {"nodes": [{"name": f"n{i}"} for i in range(LIMITS.nodes + 1)]}
    started = time.perf_counter()
    with pytest.raises(ProblemError, match=r"^nodes: 100001 nodes are more than the limit of 100,000"):
        problem_from_dict(many)
    assert time.perf_counter() - started < 5.0  # refused before 100,001 Node objects were built


def test_names_are_bounded_and_free_of_control_characters():
    with pytest.raises(ProblemError, match=r"is longer than 253 characters"):
        Node("n" * 254)
    for bad in ("a\nb", "red\x1b[31m", "nul\x00", "a\u202ereversed", "\ud800"):
        with pytest.raises(ProblemError, match="contains the control character"):
            Job(bad)
    with pytest.raises(ProblemError, match=r"labels\.zone: 'a\\nb' contains the control character '\\n'"):
        Node("n", labels={"zone": "a\nb"})
    with pytest.raises(ProblemError, match=r"gpu_models\[0\]: .* contains the control character"):
        Job("j", gpu_models={"A\x07"})
    assert Node("ünïcödé-名前").name == "ünïcödé-名前"


def test_an_error_message_never_materialises_a_huge_value():
    bomb: list = ["x"] * 9
    for _ in range(40):  # 9**40 items once expanded: any full repr would never finish
        bomb = [bomb] * 9
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ProblemError) as err:
            Node("n", labels=bomb)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5.0 and peak < 1_000_000
    assert len(str(err.value)) < 300
    assert short_repr(10**100_000) == "<an integer of about 100001 digits>"
    assert short_repr("x" * 10**7).endswith("xx'") and len(short_repr("x" * 10**7)) <= 160


def test_synthetic_clusters_are_bounded_before_building_nodes():
    with pytest.raises(ProblemError, match=r"^counts\.v100: 1000000000 GPUs make more than 100,000 servers"):
        gavel.gavel_cluster({"v100": 10**9})
    with pytest.raises(ProblemError, match=r"^gpus_per_node: 100 is beyond the limit of 64"):
        gavel.gavel_cluster({"v100": 8}, gpus_per_node=100)
    with pytest.raises(ProblemError, match=r"^nodes: 1000000000 is beyond the limit of 100,000"):
        synthetic.openb_nodes(10**9)
    with pytest.raises(ProblemError, match=r"^load: 1000000000.0 needs more than 1,000,000 pods"):
        synthetic.openb_like(nodes=4, load=1e9)


def test_solver_options_are_bounded():
    from optalloc.core.options import SolveOptions

    with pytest.raises(ProblemError, match=r"^workers: 100000 is beyond the limit of 256"):
        SolveOptions(workers=100_000)
    with pytest.raises(ProblemError, match=r"^seed: 4294967296 is beyond the limit"):
        SolveOptions(seed=2**32)


def test_running_placements_name_gpu_indices_within_the_quantity_limit():
    with pytest.raises(ProblemError, match=r"gpus\[0\]: .* is beyond the limit"):
        Placement("j", 0, "n", (2**70,), 1000)
    assert Allocation((Placement("j", 0, "n", (3,), 1000),)).placements[0].gpus == (3,)
