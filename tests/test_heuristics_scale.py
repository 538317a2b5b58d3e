"""What makes the heuristics fast keeps their answers: scalar twins, profile deltas, time limits."""

from __future__ import annotations

import gc
import importlib

import numpy as np
import pytest

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, Reason, Status, Unplaced
from optalloc.core import FragmentationModel, Workload, evaluate, verify
from optalloc.core.fragmentation import pairwise_sum
from optalloc.core.objective import evaluate_placements
from optalloc.core.state import placement_of, unplaced_of
from optalloc.core.verify import CHECKS
from optalloc.heuristics import RULES, Placer, allocate
from optalloc.heuristics.registry import get_rule
from optalloc.heuristics.rules import (
    DECIMALS,
    Candidates,
    Context,
    JobView,
    NodeScalar,
    _points_table,
    sigmoid_formula,
    sigmoid_points,
)
from optalloc.io import synthetic
from tests.test_heuristics_allocate import random_problem

allocate_module = importlib.import_module("optalloc.heuristics.allocate")
placer_module = importlib.import_module("optalloc.heuristics.placer")


def _random_candidates(rng: np.random.Generator, b: int, g: int) -> Candidates:
    gpus = rng.integers(0, g + 1, size=b)
    slots = np.arange(g)[None, :] < gpus[:, None]
    free = rng.choice([0, 100, 190, 350, 500, 810, 1000], size=(b, g))
    gpu = np.where(slots, free, -1).astype(np.int64)
    tags = rng.integers(0, 3, size=(b, g + 1))
    return Candidates(
        nodes=np.arange(b),
        gpu=gpu,
        ok=np.zeros((b, g), dtype=bool),
        cpu=rng.integers(0, 64, size=b) * 1000,
        memory=rng.integers(0, 64, size=b) * 1024,
        model=np.zeros(b, dtype=np.int64),
        gpus=gpus.astype(np.int64),
        tags=tags.astype(np.int64),
    )


@pytest.mark.parametrize("rule", [r for r in RULES if get_rule(r).scalar is not None])
def test_scalar_twins_score_exactly_as_the_vectorised_rules(rule):
    rng = np.random.default_rng(3)
    spec = get_rule(rule)
    assert spec.scalar is not None
    ctx = Context(max_cpu=64000, max_gpu=8000, fragmentation=None, rng=np.random.default_rng(0))
    for _ in range(200):
        c = _random_candidates(rng, 12, 4)
        kind = rng.integers(0, 3)
        job = JobView(
            cpu=int(rng.integers(0, 8)) * 1000,
            memory=0,
            gpus=int(rng.integers(1, 3)) if kind == 1 else 0,
            share=int(rng.choice([100, 350, 500, 810])) if kind == 2 else 0,
            gpu_memory=0,
        )
        ok = c.gpu >= job.per_gpu
        fits = (ok.sum(axis=1) >= job.gpus_used) & (c.cpu >= job.cpu)
        c = Candidates(
            c.nodes[fits], c.gpu[fits], ok[fits], c.cpu[fits], c.memory[fits], c.model[fits], c.gpus[fits], c.tags[fits]
        )
        if not len(c.nodes):
            continue
        scores, shares = spec.score(c, job, ctx)
        one = NodeScalar()
        for i in range(len(c.nodes)):
            one.cpu, one.free, one.gpus = int(c.cpu[i]), int(c.free_gpu[i]), int(c.gpus[i])
            one.gpu, one.ok, one.tags = c.gpu[i].tolist(), c.ok[i].tolist(), c.tags[i].tolist()
            score, share = spec.scalar(one, job, ctx)
            assert score == scores[i], (rule, job, i)
            if job.share:
                assert share == shares[i], (rule, job, i)


@pytest.mark.parametrize("rule", [r for r in RULES if get_rule(r).scalar is not None])
def test_answers_do_not_depend_on_when_the_scalar_path_is_taken(rule, monkeypatch):
    rng = np.random.default_rng(11)
    problem = random_problem(rng, jobs=80, nodes=10)
    default = allocate(problem, rule=rule)
    monkeypatch.setattr(placer_module, "SCALAR_NODES", 0)
    assert allocate(problem, rule=rule).placements == default.placements


def test_profile_deltas_equal_the_rebuilt_profile():
    rng = np.random.default_rng(5)
    wl = Workload(
        np.array([0, 2000, 4000, 1000]),
        np.array([1, 1, 2, 0]),
        np.array([350, 500, 1000, 0]),
        np.ones((4, 1), dtype=bool),
        np.array([0.4, 0.3, 0.2, 0.1]),
    )
    model = FragmentationModel.of(wl, 1)
    for _ in range(50):
        gpu = rng.choice([-1, 0, 150, 350, 500, 650, 1000], size=(9, 4)).astype(np.int64)
        before = model.profile(gpu)
        rows = np.arange(9)
        for share in (100, 350, 500):
            slot = rng.integers(0, 4, size=9)
            free = gpu[rows, slot]
            fits = free >= share
            after = gpu.copy()
            after[rows, slot] -= share
            want = model.profile(after[fits])
            got = before.after_share(rows[fits], free[fits], share, model.columns)
            for name in ("total", "count", "usable"):
                assert np.array_equal(getattr(got, name), getattr(want, name))
        whole = (gpu == 1000).sum(axis=1) >= 2
        taken = gpu.copy()
        for r in np.flatnonzero(whole):
            taken[r, np.flatnonzero(gpu[r] == 1000)[:2]] = 0
        want = model.profile(taken[whole])
        got = before.after_whole(rows[whole], 2)
        for name in ("total", "count", "usable"):
            assert np.array_equal(getattr(got, name), getattr(want, name))


def _placer_midway(problem: Problem, rule: str, *, release: float = 0.3, seed: int = 2) -> Placer:
    """A placer that has placed every job of ``problem`` in turn and, after each, released a random
    placed one with probability ``release`` (many node states interned)."""
    placer = Placer(problem, rule)
    rng = np.random.default_rng(seed)
    live = []
    for j in range(len(problem.jobs)):
        got = placer.place(j)
        if got:
            live.append(got)
        if live and rng.random() < release:
            placer.release(live.pop(int(rng.integers(len(live)))))
    return placer


def test_fgd_rules_score_as_a_fresh_placer_after_a_long_run_with_releases():
    problem = synthetic.openb_like(nodes=30, jobs=400, seed=4)
    for rule in ("fgd", "fgd-plus"):
        placer = _placer_midway(problem, rule, release=0.4, seed=1)
        fresh = Placer(problem, rule, state=placer.state.copy())
        for j in range(0, len(problem.jobs), 7):
            assert np.array_equal(placer.scores(j), fresh.scores(j)), (rule, j)


@pytest.mark.parametrize("rule", ["fgd", "fgd-plus"])
def test_state_twins_score_every_state_exactly_as_the_vectorised_rules(rule, monkeypatch):
    rng = np.random.default_rng(8)
    problems = [synthetic.openb_like(nodes=40, jobs=500, seed=6, sharing=0.7), random_problem(rng, jobs=120, nodes=12)]
    for problem in problems:
        placer = _placer_midway(problem, rule)
        states = placer._states
        assert states is not None and get_rule(rule).state_scalar is not None
        sids = np.arange(states.size)
        twins = 0
        for j in range(len(problem.jobs)):
            cache = placer._cache(j)
            assert cache.memo_score is not None and cache.memo_slot is not None
            got = []
            for few in (0, 10**9):  # 0: numpy for every state; 10**9: the twin for every state
                monkeypatch.setattr(placer_module, "SCALAR_STATES", few)
                cache.memo_score[:] = np.nan
                cache.memo_slot[:] = -1
                placer._score_new_states(cache, sids)
                got.append((cache.memo_score[: states.size].copy(), cache.memo_slot[: states.size].copy()))
            (vector, vector_slot), (twin, twin_slot) = got
            assert np.array_equal(vector, twin), (rule, j)
            if cache.job.share:
                assert np.array_equal(vector_slot, twin_slot), (rule, j)
            twins += cache.state_scalar
        assert twins > 0  # the twin was compared, not skipped


def test_state_profiles_computed_one_by_one_equal_numpy_s(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=7)
    caches = []
    for few in (0, 10**9):
        monkeypatch.setattr(placer_module, "SCALAR_STATES", few)
        placer = _placer_midway(problem, "fgd")
        assert placer._frag is not None
        placer._frag.update()
        caches.append(placer._frag)
    numpy_side, python_side = caches
    assert numpy_side.done == python_side.done > len(problem.nodes)
    for name in ("count", "usable", "value"):
        assert np.array_equal(getattr(numpy_side, name), getattr(python_side, name)), name


@pytest.mark.parametrize("rule", ["fgd", "fgd-plus"])
@pytest.mark.parametrize("seed", [1, 2])
def test_answers_do_not_depend_on_when_the_state_twin_is_taken(rule, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    for problem in (random_problem(rng, jobs=80, nodes=10), synthetic.openb_like(nodes=60, jobs=600, seed=seed)):
        default = allocate(problem, rule=rule)
        monkeypatch.setattr(placer_module, "SCALAR_STATES", 0)
        assert allocate(problem, rule=rule).placements == default.placements
        monkeypatch.setattr(placer_module, "SCALAR_STATES", 10**9)
        assert allocate(problem, rule=rule).placements == default.placements
        monkeypatch.undo()


def test_pairwise_sum_adds_in_numpy_s_order():
    rng = np.random.default_rng(4)
    for n in [*range(0, 20), 64, 127, 128, 129, 300, 1000]:
        row = rng.random((1, n)) * rng.choice([1e-3, 1.0, 1e3], size=(1, n))
        assert pairwise_sum(row[0].tolist()) == row.sum(axis=1)[0], n


def test_fragmentation_of_one_state_equals_the_vectorised_value():
    problem = synthetic.openb_like(nodes=60, jobs=400, seed=3)
    model = FragmentationModel.of(Workload.of_problem(problem), len(problem.model_names))
    rng = np.random.default_rng(9)
    gpu = rng.choice([-1, 0, 100, 250, 500, 700, 1000], size=(200, 8)).astype(np.int64)
    cpu = rng.integers(0, 100, size=200) * 1000
    node_model = rng.integers(-1, len(problem.model_names), size=200)
    profile = model.profile(gpu)
    want = model.of_profile(profile, cpu, node_model)
    for i in range(200):
        count, usable = model.profile_one(gpu[i].tolist())
        assert count == profile.count[i].tolist() and usable == profile.usable[i].tolist(), i
        got = model.of_one(
            int(profile.total[i]),
            profile.count[i].tolist(),
            profile.usable[i].tolist(),
            int(cpu[i]),
            int(node_model[i]),
        )
        assert got == want[i], i


def test_trusted_placements_equal_validated_ones():
    a = placement_of("j", 2, "n", (1, 3), 1000)
    b = Placement("j", 2, "n", (1, 3), 1000)
    assert a == b and hash(a) == hash(b) and a.to_dict() == b.to_dict()
    u, v = unplaced_of("j", "time limit", "why"), Unplaced("j", "time limit", "why")
    assert u == v and hash(u) == hash(v) and u.to_dict() == v.to_dict()


# Time limits -------------------------------------------------------------------------------------------
class _Clock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def perf_counter(self) -> float:
        self.now += self.step
        return self.now


def test_a_tiny_time_limit_lists_every_undecided_job_and_loses_none():
    problem = synthetic.openb_like(nodes=20, jobs=300, seed=2)
    for rule in ("best-fit", "fgd"):
        answer = allocate(problem, rule=rule, time_limit=1e-9)
        assert answer.status is Status.FEASIBLE and verify(problem, answer) == []
        assert answer.placements == ()
        assert {u.reason for u in answer.unplaced} == {Reason.TIME_LIMIT.value}
        assert answer.stats["undecided"] == len(problem.jobs) == len(answer.unplaced)


def test_a_time_limit_lists_neither_running_jobs_nor_counts_them_in_the_reasons():
    problem = synthetic.openb_like(nodes=20, jobs=300, seed=2)
    ran = allocate(problem, rule="best-fit")
    running = ran.placements[: len(ran.placements) // 2]
    now = Allocation(running, method="current", status=Status.FEASIBLE)
    problem = Problem(nodes=problem.nodes, jobs=problem.jobs, current=now)
    answer = allocate(problem, rule="best-fit", time_limit=1e-9)
    assert verify(problem, answer) == []
    assert answer.unplaced_jobs == set(problem.job_names) - now.placed_jobs
    assert answer.stats["undecided"] == len(answer.unplaced)
    assert answer.stats["fits_no_node"] == answer.stats["held_back"] == 0


def test_a_time_limit_mid_way_keeps_what_was_placed(monkeypatch):
    problem = synthetic.openb_like(nodes=20, jobs=300, seed=2)
    full = allocate(problem, rule="best-fit")
    # The clock advances 1 s per reading: read at the start (1 s: stop at 6.5 s), once the queue is
    # ordered (2 s), then every CLOCK_EVERY jobs (3, 4, 5, 6 s pass; 7 s stops).
    monkeypatch.setattr(allocate_module, "time", _Clock(1.0))
    answer = allocate(problem, rule="best-fit", time_limit=5.5)
    assert verify(problem, answer) == []
    undecided = [u.job for u in answer.unplaced if u.reason == Reason.TIME_LIMIT.value]
    decided = len(problem.jobs) - len(undecided)
    assert answer.stats["undecided"] == len(undecided) > 0
    assert decided == 4 * allocate_module.CLOCK_EVERY
    # What it decided, it decided as the unlimited run did (the first jobs of the queue).
    assert answer.placements == tuple(p for p in full.placements if p.job not in set(undecided))


def test_deadline_and_time_limit_take_the_earlier(monkeypatch):
    problem = synthetic.openb_like(nodes=20, jobs=300, seed=2)
    monkeypatch.setattr(allocate_module, "time", _Clock(1.0))
    # readings: 1 s at the start, 2 s once the queue is ordered, 3 s at the first job, 4 s stops
    answer = allocate(problem, rule="first-fit", time_limit=100.0, deadline=3.5)
    assert answer.stats["undecided"] == len(problem.jobs) - allocate_module.CLOCK_EVERY


def test_a_head_rule_places_the_head_of_the_queue_and_the_rule_the_rest():
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    head = 200
    fast = allocate(problem, rule="first-fit")
    mixed = allocate(problem, rule="fgd-plus", head_rule="first-fit", head_jobs=head)
    assert verify(problem, mixed) == [] and mixed.method == "first-fit+fgd-plus"
    assert mixed.stats["head_jobs"] == head and mixed.stats["rule_jobs"] == len(problem.jobs) - head
    assert sorted(mixed.placed_jobs | mixed.unplaced_jobs) == sorted(j.name for j in problem.jobs)
    # The head was placed exactly as first-fit places it (the first jobs of the queue, the same state).
    first = {j.name for j in problem.jobs[:head]}
    assert {p for p in mixed.placements if p.job in first} == {p for p in fast.placements if p.job in first}
    assert mixed.placements != fast.placements  # and the rest by fgd-plus


def test_past_rule_until_the_head_rule_places_the_rest_and_no_job_is_left_undecided():
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    fast = allocate(problem, rule="first-fit")
    handed_back = allocate(problem, rule="fgd-plus", head_rule="first-fit", rule_until=0.0)
    assert handed_back.stats["rule_jobs"] == 0 and handed_back.stats["undecided"] == 0
    assert handed_back.placements == fast.placements and handed_back.method == "first-fit+fgd-plus"
    whole = allocate(problem, rule="fgd-plus", head_rule="first-fit", rule_until=float("inf"))
    assert whole.method == "fgd-plus" and whole.placements == allocate(problem, rule="fgd-plus").placements


def test_the_costly_rule_hands_back_once_the_head_rule_needs_the_time_left(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    fast = allocate(problem, rule="first-fit")
    # The clock moves 1 s per reading: 1 s at the start, 2 + k s at job k. With 0.5 s per job for the
    # head rule, the time left to 302.25 s first falls short of 0.5 s x the jobs left (and the time to
    # build the answer, micro-seconds) at job 101: 2 + 101 + 0.5 x 399 = 302.5.
    monkeypatch.setattr(allocate_module, "time", _Clock(1.0))
    answer = allocate(problem, rule="fgd-plus", head_rule="first-fit", rule_until=302.25, head_per_job=0.5)
    assert answer.stats["rule_jobs"] == 101 and answer.stats["undecided"] == 0
    assert verify(problem, answer) == [] and answer.placements != fast.placements
    first = {j.name for j in problem.jobs[:101]}
    whole = allocate(problem, rule="fgd-plus")
    assert {p for p in answer.placements if p.job in first} == {p for p in whole.placements if p.job in first}


def test_a_head_rule_slower_than_the_time_left_takes_the_queue_back_at_once():
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    import time

    soon = time.perf_counter() + 1000.0
    answer = allocate(problem, rule="fgd-plus", head_rule="first-fit", rule_until=soon, head_per_job=10.0)
    assert answer.stats["rule_jobs"] == 0 and answer.placements == allocate(problem, rule="first-fit").placements


def _probed(problem, monkeypatch, *, until: float, head_jobs: int = 400):
    """fgd-plus after a probe of 100 jobs on a clock that moves 1 s per reading: 1 s at the start, 2 s
    once the placer is built, 3 s at job 25 (the first look: 0.7 x 1 s / 25 = 0.028 s a job), 4 s to
    size, 5 s at job 100 (0.7 x 3 s / 100 = 0.021 s a job), 6 s to size; the head rule's time per job
    is a nanosecond, so the hand-back comes when the clock reaches ``until``."""
    monkeypatch.setattr(allocate_module, "time", _Clock(1.0))
    return allocate(
        problem,
        rule="fgd-plus",
        head_rule="first-fit",
        head_jobs=head_jobs,
        rule_until=until,
        head_per_job=1e-9,
        probe_jobs=100,
    )


def _placed_as(answer, reference, jobs) -> bool:
    names = {j.name for j in jobs}
    return {p for p in answer.placements if p.job in names} == {p for p in reference.placements if p.job in names}


def test_a_probe_that_finds_the_rule_fast_enough_lets_it_place_the_queue_until_the_hand_back(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    whole = allocate(problem, rule="fgd-plus")
    # At job 100, 14 s are left: at 0.021 s a job the rule reaches 100 + 666 jobs, more than 90% of the
    # queue, and goes on; the hand-back comes at 20 s (job 113: one reading per job from 7 s at job 100).
    answer = _probed(problem, monkeypatch, until=20.0)
    assert verify(problem, answer) == [] and answer.stats["undecided"] == 0
    assert answer.stats["probe_jobs"] == 100 and answer.stats["head_jobs"] == 0
    assert answer.stats["rule_jobs"] == 113 and _placed_as(answer, whole, problem.jobs[:113])
    # With all the time it needs, its answer is the rule's alone.
    monkeypatch.undo()
    alone = allocate(
        problem,
        rule="fgd-plus",
        head_rule="first-fit",
        head_jobs=400,
        rule_until=float("inf"),
        head_per_job=1e-9,
        probe_jobs=100,
    )
    assert alone.method == "fgd-plus" and alone.placements == whole.placements and alone.stats["probe_jobs"] == 100


def test_a_probe_that_finds_the_rule_too_slow_sizes_the_head_by_its_pace(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    whole = allocate(problem, rule="fgd-plus")
    # At job 100, 6 s are left: the rule would reach 100 + 285 jobs, less than 90%; its tail gets 0.8 of
    # the time left, int(0.8 x 6 / 0.021) = 228 jobs, so first-fit places jobs 100-271, fgd-plus from
    # job 272 until the clock reaches 12 s (job 277), first-fit the rest. The probe was fgd-plus's.
    built: list[str] = []

    def placer(problem, name, **kwargs):  # type: ignore[no-untyped-def]
        built.append(name)
        return Placer(problem, name, **kwargs)

    monkeypatch.setattr(allocate_module, "Placer", placer)
    answer = _probed(problem, monkeypatch, until=12.0)
    assert built == ["fgd-plus", "first-fit", "fgd-plus", "first-fit"]  # probe, head, tail, hand-back
    assert verify(problem, answer) == [] and answer.stats["undecided"] == 0
    assert answer.method == "first-fit+fgd-plus" and answer.stats["probe_jobs"] == 100
    assert answer.stats["head_jobs"] == 172 and answer.stats["rule_jobs"] == 100 + 5
    assert _placed_as(answer, whole, problem.jobs[:100])
    # A head planned shorter than the pace gives (head_jobs=150) is kept: the tail is the longer of the two.
    shorter = _probed(problem, monkeypatch, until=12.0, head_jobs=150)
    assert shorter.stats["head_jobs"] == 50 and verify(problem, shorter) == []


def test_a_rule_far_too_slow_at_the_first_look_hands_over_before_the_probe_ends(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    whole = allocate(problem, rule="fgd-plus")
    # At job 25, 5 s are left: at 0.028 s a job the rule reaches 25 + 178 jobs, less than half of 90% of
    # the queue; its tail gets int(0.8 x 5 / 0.028) = 142 jobs, so first-fit places jobs 25-357.
    answer = _probed(problem, monkeypatch, until=9.0)
    assert verify(problem, answer) == [] and answer.stats["undecided"] == 0
    assert answer.stats["probe_jobs"] == 25 and answer.stats["head_jobs"] == 358 - 25
    assert _placed_as(answer, whole, problem.jobs[:25])


def test_a_time_limit_during_the_probe_counts_only_the_jobs_timed(monkeypatch):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    # Readings: 1 s at the start, 2 s once the queue is ordered, 3 s once the placer is built (the probe's
    # start), then every CLOCK_EVERY jobs: 4 s at job 0, 5 s at job 16; the first look at job 25 reads 6 s
    # and 7 s (100 s left: the rule goes on); 8 s at job 32 stops (deadline 5.5 s), inside the probe of 100.
    monkeypatch.setattr(allocate_module, "time", _Clock(1.0))
    kwargs = {"head_rule": "first-fit", "head_jobs": 400, "rule_until": 100.0, "head_per_job": 1e-9}
    answer = allocate(problem, rule="fgd-plus", deadline=5.5, probe_jobs=100, **kwargs)
    assert answer.stats["probe_jobs"] == 32 and answer.stats["undecided"] == len(problem.jobs) - 32
    assert verify(problem, answer) == []


def test_a_heads_probe_reaches_the_rules_run():
    from optalloc import heuristics
    from optalloc.anytime import run_heuristic
    from optalloc.anytime.strong_tail import Head
    from optalloc.core.budget import Budget
    from optalloc.core.options import SolveOptions

    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    seen: dict = {}
    real = heuristics.allocate

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs)
        return real(*args, **kwargs)

    budget = Budget(30.0)
    head = Head("first-fit", 200, budget.deadline, budget.deadline, per_job=1e-6, probe=15)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(heuristics, "allocate", spy)
        answer = run_heuristic(problem, SolveOptions(), budget, rule="fgd-plus", head=head)
    assert seen["probe_jobs"] == 15 and seen["head_jobs"] == 200 and verify(problem, answer) == []


def test_no_hand_back_comes_while_the_rule_times_itself():
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=4)
    whole = allocate(problem, rule="fgd-plus")
    fast = allocate(problem, rule="first-fit")

    def passed(head_jobs):  # rule_until has passed: without a probe the head rule takes the queue at once
        kwargs = {"head_rule": "first-fit", "rule_until": 0.0, "head_per_job": 1e-9, "probe_jobs": 40}
        return allocate(problem, rule="fgd-plus", head_jobs=head_jobs, **kwargs)

    # No head planned: the rule places the probe's 40 jobs, then the hand-back comes.
    answer = passed(0)
    assert answer.stats["probe_jobs"] == answer.stats["rule_jobs"] == 40 and answer.stats["head_jobs"] == 0
    assert _placed_as(answer, whole, problem.jobs[:40]) and answer.stats["undecided"] == 0
    # A head planned: the first look (job 10) finds no time left and hands the head rule the queue.
    answer = passed(300)
    assert answer.stats["probe_jobs"] == answer.stats["rule_jobs"] == 10 and answer.stats["head_jobs"] == 290
    assert _placed_as(answer, whole, problem.jobs[:10]) and answer.stats["undecided"] == 0
    assert answer.placements != fast.placements and verify(problem, answer) == []


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("head_per_job", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": -1.0}),
        ("head_per_job", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": float("nan")}),
        ("head_per_job", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": True}),
        ("head_per_job", {"head_rule": "first-fit", "head_per_job": 0.1}),
        ("head_jobs", {"head_rule": "first-fit", "head_jobs": -1}),
        ("head_jobs", {"head_rule": "first-fit", "head_jobs": 2.5}),
        ("rule_until", {"rule_until": 1.0}),
        ("head_jobs", {"head_jobs": 3}),
        ("probe_jobs", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": 0.1, "probe_jobs": -1}),
        ("probe_jobs", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": 0.1, "probe_jobs": 2.5}),
        ("probe_jobs", {"head_rule": "first-fit", "rule_until": 1.0, "head_per_job": 0.1, "probe_jobs": True}),
        ("probe_jobs", {"head_rule": "first-fit", "rule_until": 1.0, "probe_jobs": 10}),
    ],
)
def test_a_bad_head_is_misuse(field, kwargs):
    problem = Problem([Node("n", cpu=1000, memory=1000)], [Job("a", cpu=1)])
    with pytest.raises(ProblemError, match=field):
        allocate(problem, rule="fgd", **kwargs)


@pytest.mark.parametrize("bad", [0, -1.0, "1", True, float("nan")])
def test_a_bad_time_limit_is_misuse(bad):
    problem = Problem([Node("n", cpu=1000, memory=1000)], [Job("a", cpu=1)])
    with pytest.raises(ProblemError, match="time_limit"):
        allocate(problem, rule="best-fit", time_limit=bad)


def test_verify_lists_one_check_per_rule():
    assert len(CHECKS) >= 15
    for check in CHECKS:
        assert check.__name__.startswith("check_") and check.__doc__


# Node order ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_the_order_of_the_node_list_does_not_change_the_answer(rule):
    problem = synthetic.openb_like(nodes=40, jobs=500, seed=6)
    answer = allocate(problem, rule=rule, seed=3)
    for shuffle in range(3):
        order = np.random.default_rng(shuffle).permutation(len(problem.nodes))
        shuffled = problem.replace(nodes=tuple(problem.nodes[i] for i in order))
        again = allocate(shuffled, rule=rule, seed=3)
        assert verify(shuffled, again) == []
        if rule == "random":  # it draws among the feasible nodes by position: the same answer in distribution only
            continue
        assert again.placements == answer.placements, (rule, shuffle)


def test_index_tie_break_follows_the_list_and_name_does_not():
    nodes = [Node(f"n{i}", cpu=8000, memory=8000, gpus=1, gpu_model="T4") for i in range(6)]
    problem = Problem(nodes, [Job("a", gpus=1)])
    assert allocate(problem, rule="first-fit", tie_break="index").placements[0].node == "n0"
    reverse = problem.replace(nodes=tuple(reversed(nodes)))
    assert allocate(reverse, rule="first-fit", tie_break="index").placements[0].node == "n5"
    by_name = {allocate(p, rule="first-fit").placements[0].node for p in (problem, reverse)}
    assert len(by_name) == 1
    seeds = {allocate(problem, rule="first-fit", seed=s).placements[0].node for s in range(8)}
    assert len(seeds) > 1  # the seed picks another fixed order


def test_unknown_tie_break_is_misuse():
    problem = Problem([Node("n", cpu=1000, memory=1000)], [Job("a", cpu=1)])
    with pytest.raises(ProblemError, match="tie_break"):
        allocate(problem, rule="best-fit", tie_break="random")


def test_sigmoid_points_read_off_the_table_equal_the_formula():
    rng = np.random.default_rng(3)
    drops = np.concatenate(
        [
            np.round(rng.normal(0, 3000, 20000), DECIMALS),
            np.round(rng.uniform(-50, 50, 20000), DECIMALS),
            np.array([0.0, -0.0, 1e-6, -1e-6, 40000.0, -40000.0, 1e9, -1e9]),
        ]
    )
    for scale in (1000.0, 500.0):
        with np.errstate(over="ignore"):
            want = sigmoid_formula(drops, scale)
        assert np.array_equal(sigmoid_points(drops, scale), want)
    # around every step of the table too
    table = _points_table(1000.0)
    near = np.round((table[:, None] + np.arange(-3, 4)[None, :] * 1e-6).ravel(), DECIMALS)
    with np.errstate(over="ignore"):
        assert np.array_equal(sigmoid_points(near), sigmoid_formula(near))


def test_the_trusted_answer_and_objective_equal_the_checked_ones():
    problem = synthetic.openb_like(nodes=30, jobs=200, seed=6)
    answer = allocate(problem, rule="best-fit")
    rebuilt = Allocation(
        answer.placements,
        answer.unplaced,
        method=answer.method,
        status=answer.status,
        objective=answer.objective,
        wall_time=answer.wall_time,
        stats=dict(answer.stats),
    )
    assert answer == rebuilt and type(answer.stats) is type(rebuilt.stats)
    assert evaluate_placements(problem, answer.placements) == evaluate(problem, answer)
    assert float(evaluate(problem, answer).total) == answer.objective


def test_allocate_leaves_the_garbage_collector_as_it_found_it():
    problem = synthetic.openb_like(nodes=10, jobs=40, seed=1)
    assert gc.isenabled()
    allocate(problem, rule="fgd")
    assert gc.isenabled()
    gc.disable()
    try:
        allocate(problem, rule="best-fit")
        assert not gc.isenabled()
    finally:
        gc.enable()
