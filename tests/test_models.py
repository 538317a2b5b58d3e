"""The compressed integer program: exact on small problems, backends agree, warm starts are feasible."""

import os

import numpy as np
import pytest

from optalloc import Allocation, Job, MethodUnavailable, Node, ObjectiveWeights, Placement, Problem, Status, verify
from optalloc.core import evaluate
from optalloc.core.budget import Budget
from optalloc.core.options import SolveOptions
from optalloc.io import synthetic
from optalloc.models import build, compress, encode, solve_exact
from optalloc.models.lp_bound import lp_bound, relax
from optalloc.models.rounding import round_solution
from optalloc.solve import methods, solve


def small_problem() -> Problem:
    nodes = [Node(f"n{i}", cpu=16000, memory=64000, gpus=4, gpu_model="T4") for i in range(3)]
    jobs = [
        Job("a", cpu=2000, gpus=2),
        Job("b", cpu=1000, gpu_milli=700),
        Job("c", cpu=1000, gpu_milli=300),
        Job("d", cpu=1000, gpu_milli=500, replicas=3),
        Job("e", cpu=100, gpus=4, replicas=2),
        Job("f", cpu=12000, gpus=1),
        Job("g", cpu=99999),
    ]
    return Problem(nodes, jobs)


def test_identical_nodes_become_one_type_and_identical_jobs_one_class():
    nodes = [Node(f"n{i}", cpu=8000, memory=100, gpus=2, gpu_model="T4") for i in range(50)]
    jobs = [Job(f"j{i}", cpu=1000, gpus=1) for i in range(200)] + [Job("s", gpu_milli=500)]
    comp = compress(Problem(nodes, jobs))
    assert len(comp.types) == 1 and comp.types[0].count == 50
    assert sorted(c.count for c in comp.classes) == [1, 200]


def test_running_jobs_split_node_types_by_free_capacity():
    nodes = [Node(f"n{i}", cpu=8000, memory=100, gpus=2, gpu_model="T4") for i in range(4)]
    jobs = [Job("r", cpu=1000, gpu_milli=300), Job("new", gpus=1)]
    current = Allocation([Placement("r", 0, "n0", (1,), 300)])
    comp = compress(Problem(nodes, jobs, current=current))
    assert sorted(t.count for t in comp.types) == [1, 3]
    partly = next(t for t in comp.types if t.count == 1)
    assert partly.full_gpus == 1 and partly.partial == ((700, 0),)


@pytest.mark.parametrize("backend", ["cpsat", "cbc", "highs"])
def test_every_backend_finds_the_same_proven_optimum(backend):
    problem = small_problem()
    answer = solve_exact(problem, SolveOptions(time_limit=20, seed=1), backend=backend)
    assert verify(problem, answer) == []
    assert answer.status is Status.OPTIMAL
    # a(2000)+b(700)+c(300)+e(8000)+f(1000) = 12000; e spans two nodes (-1 spread).
    assert answer.objective == 11999
    assert answer.bound == 11999
    assert {u.job: u.reason for u in answer.unplaced}["g"] == "fits no node"


def test_lp_bound_is_at_least_the_optimum():
    problem = small_problem()
    assert lp_bound(problem) >= 11999


def test_heuristic_hint_and_rounded_lp_are_feasible_programs():
    problem = small_problem()
    form = build(compress(problem, group_nodes=True))
    warm = solve(problem, "best-fit")
    assert form.program.check(encode(form, warm)) == []
    lp = relax(form.program, form.weights)
    rounded = round_solution(form, lp.values)
    assert form.program.check(rounded) == []
    assert form.program.value(rounded, form.weights) <= lp.bound


def test_grouped_program_is_a_relaxation_and_its_bound_holds():
    rng = np.random.default_rng(3)
    nodes = [Node(f"n{i}", cpu=32000, memory=256000, gpus=8, gpu_model="G2") for i in range(40)]
    jobs = []
    for i in range(300):
        kind = rng.integers(3)
        if kind == 0:
            jobs.append(Job(f"w{i}", cpu=int(rng.integers(1, 8)) * 1000, gpus=int(rng.choice([1, 2, 4, 8]))))
        elif kind == 1:
            jobs.append(Job(f"s{i}", cpu=1000, gpu_milli=int(rng.choice([250, 500, 810]))))
        else:
            jobs.append(Job(f"c{i}", cpu=4000, memory=8000))
    problem = Problem(nodes, jobs)
    answer = solve(problem, "cpsat", time_limit=10, seed=0)
    assert answer.bound is not None and answer.bound >= answer.objective
    assert answer.gap is not None and answer.gap < 0.05
    assert answer.objective >= solve(problem, "best-fit").objective


def test_lexicographic_mode_reports_the_primary_value():
    problem = small_problem().replace(weights=ObjectiveWeights(lexicographic=True))
    answer = solve(problem, "cpsat", time_limit=20)
    assert answer.objective == 12000 and answer.status is Status.OPTIMAL


def test_priority_wins_capacity():
    nodes = [Node("n", cpu=8000, memory=100, gpus=1, gpu_model="T4")]
    jobs = [Job("low", gpus=1, priority=0, arrival=0), Job("high", gpus=1, priority=5, arrival=9)]
    answer = solve(Problem(nodes, jobs), "cpsat", time_limit=10)
    assert [p.job for p in answer.placements] == ["high"]


def test_previous_allocation_is_kept_and_new_jobs_fill_around_it():
    nodes = [Node(f"n{i}", cpu=8000, memory=100, gpus=2, gpu_model="T4") for i in range(2)]
    jobs = [Job("old", gpus=1), Job("new1", gpus=2), Job("new2", gpus=1)]
    problem = Problem(nodes, jobs)
    previous = Allocation([Placement("old", 0, "n0", (0,), 1000)])
    answer = solve(problem, "cpsat", previous=previous, time_limit=10)
    assert Placement("old", 0, "n0", (0,), 1000) in answer.placements
    assert {p.job for p in answer.placements} == {"old", "new1", "new2"}


def test_migration_is_used_only_when_allowed():
    nodes = [Node(f"n{i}", cpu=8000, memory=100, gpus=2, gpu_model="T4") for i in range(2)]
    jobs = [Job("a", gpus=1), Job("b", gpus=1), Job("big", gpus=2)]
    current = Allocation([Placement("a", 0, "n0", (0,), 1000), Placement("b", 0, "n1", (0,), 1000)])
    problem = Problem(nodes, jobs, current=current)
    stay = solve(problem, "cpsat", time_limit=10)
    assert "big" in stay.unplaced_jobs
    moved = solve(problem, "cpsat", time_limit=10, allow_migration=True)
    assert moved.placed_jobs == {"a", "b", "big"}
    assert moved.diff(current).moved_replicas == 1
    assert evaluate(problem, moved).moved_replicas == 1


def test_re_placing_the_programs_selection_survives_a_preempted_running_job():
    # A running low-priority job the program stops is not in the selection: re-placing the selection
    # must not keep it in ``current`` (it once raised "is not a job of this problem").
    from optalloc.anytime import replace_with_heuristic as _replace_with_heuristic

    nodes = [Node("n", cpu=8000, memory=100, gpus=1, gpu_model="T4")]
    jobs = [Job("low", gpus=1, priority=0), Job("high", gpus=1, priority=5)]
    current = Allocation([Placement("low", 0, "n", (0,), 1000)])
    problem = Problem(nodes, jobs, current=current)
    exact = solve(problem, "cpsat", time_limit=10, allow_migration=True)
    assert exact.placed_jobs == {"high"}
    options = SolveOptions(allow_migration=True, warm_start="best-fit")
    answer = _replace_with_heuristic(problem, exact.replace(status=Status.FEASIBLE), options)
    assert answer.placed_jobs == {"high"} and not verify(problem, answer)


def test_non_preemptible_jobs_that_no_longer_fit_make_the_problem_infeasible():
    nodes = [Node("n0", cpu=1000, memory=100, gpus=1, gpu_model="T4")]
    jobs = [Job("a", cpu=2000, gpus=1, preemptible=False)]
    current = Allocation([Placement("a", 0, "n0", (0,), 1000)])
    answer = solve(Problem(nodes, jobs, current=current), "cpsat", time_limit=5, verify=False)
    assert answer.status is Status.INFEASIBLE


def test_auto_names_the_engine_and_is_never_worse_than_the_heuristic():
    problem = small_problem()
    answer = solve(problem, "auto", time_limit=10)
    assert answer.method in {"cpsat", "best-fit"}
    assert answer.objective >= solve(problem, "best-fit").objective
    assert answer.stats["heuristic"] == "best-fit"


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(MethodUnavailable, match="valid methods: auto, cpsat, milp"):
        solve(small_problem(), "simplex")


def test_registry_has_every_kind():
    kinds = {m.kind for m in methods()}
    assert {"portfolio", "exact", "bound", "heuristic"} <= kinds


def test_deterministic_mode_repeats_itself():
    problem = small_problem()
    a = solve(problem, "cpsat", time_limit=5, deterministic=True, seed=3)
    b = solve(problem, "cpsat", time_limit=5, deterministic=True, seed=3)
    assert a.placements == b.placements


def test_cpsat_stopped_before_it_searched_claims_no_bound():
    """Found by the openb benchmarks: CP-SAT stopped by its limit before search reports a bound of 0,
    which the portfolio then raised to the answer's value and printed as a gap of 0."""
    from optalloc.io import synthetic
    from optalloc.models import cpsat

    problem = synthetic.openb_like(nodes=200, jobs=3000, seed=0)
    form = build(compress(problem))
    warm = solve(problem, "best-fit")
    run = cpsat.solve_program(
        form.program, form.weights, SolveOptions(workers=1), Budget(1e-4), hint=encode(form, warm)
    )
    assert run.status is Status.FEASIBLE and run.stats["solution"] == "hint"
    assert run.bound is None


def test_filling_what_decoding_lost_up_to_the_proven_bound_reports_optimal() -> None:
    """An exact answer whose fill pass reaches the program's bound is proven optimal (the demo showed
    'feasible' with a 0.00% gap when decoding lost one replica and the fill pass put it back)."""
    from optalloc.anytime import fill as _fill
    from optalloc.core import Reason, Unplaced

    problem = Problem(nodes=(Node("n0", cpu=8000, memory=32000, gpus=2),), jobs=(Job("a", cpu=1000, gpus=1),))
    best = solve(problem, "best-fit")
    value = float(evaluate(problem, best).total)
    lost = Allocation((), (Unplaced("a", Reason.INSUFFICIENT_CAPACITY),), objective=0.0, bound=value)
    lost = lost.replace(status=Status.FEASIBLE, method="cpsat")
    filled = _fill(problem, lost, SolveOptions())
    assert filled.status is Status.OPTIMAL and filled.gap == 0 and not verify(problem, filled)
    looser = _fill(problem, lost.replace(bound=value + 1000), SolveOptions())
    assert looser.status is Status.FEASIBLE and looser.gap and looser.gap > 0


def test_re_placing_the_selection_claims_optimal_by_its_objective_not_its_ranking_score() -> None:
    """With a fragmentation guide answers rank by the primary term only; a primary term at the bound
    of the whole objective is no proof (the secondary terms can still be below it)."""
    from optalloc.anytime import replace_with_heuristic as _replace_with_heuristic

    problem = Problem(nodes=(Node("n0", cpu=8000, memory=32000, gpus=2),), jobs=(Job("a", cpu=1000, gpu_milli=500),))
    placed = solve(problem, "best-fit")
    value = evaluate(problem, placed)
    assert value.total < value.primary  # a partly used GPU costs a little
    exact = placed.replace(
        method="cpsat", status=Status.FEASIBLE, objective=float(value.total), bound=float(value.primary)
    )
    answer = _replace_with_heuristic(problem, exact, SolveOptions(fragmentation_guide=0.05))
    assert answer.status is Status.FEASIBLE and not verify(problem, answer)


def _grouped_vertex(problem):  # type: ignore[no-untyped-def]
    """The compressed program of ``problem`` (nodes grouped by type) and its LP vertex, rounded."""
    form = build(compress(problem, group_nodes=True))
    lp = relax(form.program, form.weights, Budget(30.0))
    return form, round_solution(form, lp.values)


def test_the_first_pass_of_decoding_is_a_complete_verified_answer_and_polishing_never_loses_value() -> None:
    from optalloc.models.decode import start

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    form, values = _grouped_vertex(problem)
    decoding = start(form, values, Budget(30.0))
    first = decoding.result("cpsat", Status.FEASIBLE)
    assert verify(problem, first.allocation) == []
    decided = first.allocation.placed_jobs | {u.job for u in first.allocation.unplaced}
    assert decided == {j.name for j in problem.jobs}
    lost_before = decoding.lost_value
    decoding.polish(Budget(30.0))
    polished = decoding.result("cpsat", Status.FEASIBLE)
    assert verify(problem, polished.allocation) == []
    assert decoding.lost_value <= lost_before
    assert polished.lost_replicas <= first.lost_replicas or decoding.lost_value < lost_before


def test_polishing_with_no_time_left_keeps_the_first_pass() -> None:
    from optalloc.models.decode import start

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    form, values = _grouped_vertex(problem)
    decoding = start(form, values, Budget(30.0))
    before = decoding.result("cpsat", Status.FEASIBLE).allocation
    assert decoding.polish(Budget(1e-6)) is False
    assert decoding.result("cpsat", Status.FEASIBLE).allocation.placements == before.placements


def test_an_lp_solved_in_a_child_process_gives_the_bound_of_the_same_lp_solved_here() -> None:
    from optalloc.models.highs import lp_in_child

    form = build(compress(synthetic.openb_like(nodes=300, jobs=2400, seed=11), group_nodes=True))
    here = relax(form.program, form.weights, Budget(30.0), solver="simplex", presolve=True)
    there = lp_in_child(form.program, form.weights, Budget(30.0), solver="simplex", presolve=True).collect(0.0)
    assert there.status is Status.OPTIMAL and there.values is not None
    assert there.bound == pytest.approx(here.bound)


def test_a_cancelled_child_lp_leaves_no_process_behind() -> None:
    from optalloc.models.highs import lp_in_child

    form = build(compress(synthetic.openb_like(nodes=300, jobs=2400, seed=11), group_nodes=True))
    child = lp_in_child(form.program, form.weights, Budget(30.0), solver="simplex", presolve=True)
    pid = child.pid
    assert pid is not None
    child.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_the_exact_engine_solves_its_second_lp_vertex_beside_the_first_and_leaves_no_child(monkeypatch) -> None:
    """With two CPUs and a deadline, the second LP setting runs in a child process while the first
    vertex is decoded; both are decoded, and no child outlives the solve."""
    from optalloc.models import exact

    monkeypatch.setattr(exact, "usable_cpus", lambda: 2)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    answer = exact.solve_exact(problem, SolveOptions(), Budget(20.0), search_share=0.0)
    assert answer.stats["second_vertex"] == "child process"
    assert [name for name, _ in answer.stats["candidates"]][:2] == ["lp-default", "lp-simplex"]
    assert verify(problem, answer) == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_the_second_lp_vertex_is_decoded_before_the_backend_searches(monkeypatch) -> None:
    """The vertex solving in a child process is collected and decoded before the backend's search, not
    after it: decoded after a search run to the deadline, it was lost whenever the search's own answer
    took long to decode (``cpsat`` at 10 s on the openb default list: 94.9% instead of 96.3%)."""
    from optalloc.models import exact

    monkeypatch.setattr(exact, "usable_cpus", lambda: 2)
    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    answer = exact.solve_exact(problem, SolveOptions(), Budget(4.0))
    assert answer.stats["second_vertex"] == "child process"
    decoded = [name for name, _ in answer.stats["candidates"]]
    assert decoded[:2] == ["lp-default", "lp-simplex"]
    assert verify(problem, answer) == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_polishing_in_two_processes_packs_every_type_as_polishing_in_one_does() -> None:
    """Node types share no node, so half of them packed again in a child process give, without a deadline,
    exactly the packings of a polish in one process; the child is gone after."""
    from optalloc.models.decode import start

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    form, values = _grouped_vertex(problem)
    alone, split = start(form, values, Budget(30.0)), start(form, values, Budget(30.0))
    assert sum(1 for t in split.types if t.best.missed) >= 2  # both processes have types to polish
    alone.polish(Budget())
    split.polish(Budget(), parallel=True)
    assert split.lost_value == alone.lost_value
    ours = split.result("cpsat", Status.FEASIBLE).allocation
    assert ours.placements == alone.result("cpsat", Status.FEASIBLE).allocation.placements
    assert verify(problem, ours) == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_forked_stream_delivers_every_message_in_order_and_logs_a_failure(caplog) -> None:
    from optalloc.models.forked import Stream

    def work(send) -> None:  # type: ignore[no-untyped-def]
        for i in range(50):
            send((i, np.arange(i)))
        raise RuntimeError("the child's own failure")

    stream = Stream(work)
    got: list = []
    while stream.running:
        got += stream.receive(wait=5.0)
    got += stream.close()
    assert [i for i, _ in got] == list(range(50))
    assert all(len(a) == i for i, a in got)
    assert "the child's own failure" in caplog.text
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_forked_stream_closed_twice_returns_nothing_the_second_time() -> None:
    """Closing ends the child and hands over what it sent, once; a second close (an error path ending
    every child it still holds) neither fails nor closes another file."""
    from optalloc.models.forked import Stream

    stream = Stream(lambda send: send("answer"))
    got: list = []
    while stream.running:
        got += stream.receive(wait=5.0)
    assert got + stream.close() == ["answer"]
    assert stream.close() == []


def test_a_forked_child_never_waits_for_its_parent_to_read() -> None:
    """A child sending more than a pipe holds (64 KiB) goes on working while the parent is busy: its
    messages wait in the child, not its work; the parent still gets every one, in order."""
    import time

    from optalloc.models.forked import Stream

    def work(send) -> None:  # type: ignore[no-untyped-def]
        for i in range(20):
            send((i, np.zeros(16_384)))  # 128 KiB each
        send(("done", time.perf_counter()))

    stream = Stream(work)
    time.sleep(1.0)  # the parent at its own work, not reading
    reading = time.perf_counter()
    got: list = []
    while stream.running:
        got += stream.receive(wait=5.0)
    got += stream.close()
    assert [i for i, _ in got[:-1]] == list(range(20))
    assert got[-1][0] == "done" and got[-1][1] < reading  # the child's work ended before the parent read


def test_a_forked_stream_reassembles_messages_cut_across_reads() -> None:
    """Messages larger than one read (1 MiB) and small ones between them, read while they arrive: each
    comes back whole and in order, parsed from an offset into one buffer (the buffer rebuilt after every
    message cost time quadratic in what the child sent: a 30 s solve on 10,000 nodes took 93-97 s)."""
    from optalloc.models.forked import Stream

    sizes = [300_000, 5, 1, 200_000, 3, 7, 0, 250_000] * 3  # float64 values: up to 2.4 MB each

    def work(send) -> None:  # type: ignore[no-untyped-def]
        for i, n in enumerate(sizes):
            send((i, np.full(n, float(i))))

    stream = Stream(work)
    got: list = []
    while stream.running:
        got += stream.receive(wait=5.0)
    got += stream.close()
    assert [i for i, _ in got] == list(range(len(sizes)))
    assert all(len(a) == sizes[i] and (a == i).all() for i, a in got)


def test_polishing_in_two_processes_shares_the_tries_of_one_type(monkeypatch) -> None:
    """The tries of one type are split between the processes (by the parity of their number in the whole
    polish): one large type keeps both busy, and together they make every try exactly once."""
    from optalloc.models import decode

    problem = synthetic.openb_like(nodes=300, jobs=2400, seed=11)
    form, values = _grouped_vertex(problem)
    decoding = decode.start(form, values, Budget(30.0))
    trials = max(decoding.types, key=lambda t: t.best.lost_value)
    assert trials.best.missed
    every = [rule for _, rule, _ in decode._TypeTrials(trials.nodes, trials.items, trials.best)._all_tries()]
    made: dict[int, list[str]] = {0: [], 1: []}
    for side in (0, 1):

        def no_better(*args, side=side, **kwargs):  # type: ignore[no-untyped-def]
            made[side].append(args[5])  # the rule
            return trials.best  # as good as the first pass: every try is made

        monkeypatch.setattr(decode, "pack_type", no_better)
        mine = decode._TypeTrials(trials.nodes, trials.items, trials.best)
        mine.share(side=side, first=3)
        mine.improve(problem, decoding.state, decoding.full, Budget(), 0.0)
    assert made[0] and made[1]
    assert sorted(made[0] + made[1]) == sorted(every)
    assert made[1] == every[0::2] and made[0] == every[1::2]  # try 0 is number 3 of the polish: side 1


def test_closing_a_forked_stream_ends_a_child_still_at_work_and_keeps_what_it_sent() -> None:
    import time

    from optalloc.models.forked import Stream

    def work(send) -> None:  # type: ignore[no-untyped-def]
        send("first")
        time.sleep(60)
        send("never")

    stream = Stream(work)
    assert stream.receive(wait=5.0) == ["first"]
    started = time.perf_counter()
    assert stream.close() == []
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_target_no_bound_allows_stops_the_program_before_its_search() -> None:
    """The neighbourhood search asks each step for more than it has: when a bound proves that no answer
    reaches the target, the program stops there, says so, and keeps the bound that proved it."""
    problem = small_problem()
    best = solve_exact(problem, SolveOptions(), Budget(10.0))
    assert best.status is Status.OPTIMAL and best.objective is not None
    lp = best.stats["bounds"]["lp"]
    beyond = solve_exact(problem, SolveOptions(), Budget(10.0), target=lp + 1)
    assert beyond.status is Status.UNKNOWN and beyond.stats["below_target"]
    assert beyond.bound is not None and beyond.bound <= lp
    assert "program_status" not in beyond.stats  # the backend never ran
    reachable = solve_exact(problem, SolveOptions(), Budget(10.0), target=best.objective)
    assert reachable.objective == best.objective and "below_target" not in reachable.stats
