"""An allocation packed as arrays of indices comes back from a child process as the same allocation."""

from __future__ import annotations

import pickle

import numpy as np

import optalloc
from optalloc import Allocation, Placement, Status, Unplaced
from optalloc.core.packed import PackedAllocation, pack, pack_if_named
from optalloc.io import synthetic
from tests.test_heuristics_allocate import random_problem


def test_a_packed_allocation_unpacks_to_the_same_allocation_after_pickling():
    rng = np.random.default_rng(3)
    problems = [synthetic.openb_like(nodes=40, jobs=400, seed=2), random_problem(rng, jobs=60, nodes=8)]
    for problem in problems:
        for method in ("first-fit", "fgd-plus"):
            answer = optalloc.solve(problem, method)
            assert answer.placements and answer.unplaced  # whole GPUs, shares, CPU-only, and jobs left out
            packed = pickle.loads(pickle.dumps(pack(problem, answer), protocol=pickle.HIGHEST_PROTOCOL))
            back = packed.unpack(problem)
            assert back == answer
            assert back.status is answer.status and dict(back.stats) == dict(answer.stats)
            assert back.method == answer.method and back.wall_time == answer.wall_time


def test_packing_is_smaller_than_pickling_the_allocation():
    problem = synthetic.openb_like(nodes=200, jobs=2000, seed=1)
    answer = optalloc.solve(problem, "first-fit")
    packed = pickle.dumps(pack(problem, answer), protocol=pickle.HIGHEST_PROTOCOL)
    # (entries pickle as their values alone since they are slotted: 2.9 times the packing here, 4 before)
    assert len(packed) * 2 < len(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def test_an_allocation_naming_a_job_outside_the_problem_is_sent_as_it_is():
    problem = synthetic.openb_like(nodes=4, jobs=5, seed=1)
    node = problem.nodes[0].name
    foreign = Allocation(
        (Placement("not-a-job", 0, node),), (Unplaced(problem.jobs[0].name, "time limit"),), status=Status.FEASIBLE
    )
    assert pack_if_named(problem, foreign) is foreign
    answer = optalloc.solve(problem, "best-fit")
    assert isinstance(pack_if_named(problem, answer), PackedAllocation)
