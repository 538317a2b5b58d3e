"""Reusable checks for allocators: call them from your own tests.

Each raises :class:`AssertionError` with a readable message (what was expected, what was found,
which job/node) and returns None when the property holds. They judge answers with
:func:`optalloc.verify` and :func:`optalloc.core.evaluate` only — never with optalloc's solvers —
so they can check optalloc's engines and yours alike.

``solve_fn`` arguments are any callable ``problem -> Allocation``: your scheduler, or
``lambda p: optalloc.solve.solve(p, "cpsat")``. The properties that compare optima
(permutation invariance, monotonicity in capacity) hold for exact methods only: a heuristic may
legitimately answer differently when the input order changes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
from os import PathLike
from typing import Any

from optalloc.core import Allocation, Node, Problem, Reason, evaluate, verify

__all__ = [
    "assert_bound_holds",
    "assert_monotone_in_capacity",
    "assert_no_job_lost",
    "assert_optimal_dominates",
    "assert_permutation_invariant",
    "assert_roundtrip",
    "assert_same_problem",
    "assert_valid",
    "objective",
]

SolveFn = Callable[[Problem], Allocation]
_SHOWN = 8  # violations or names listed in a message before "... and N more"


def objective(problem: Problem, allocation: Allocation) -> int:
    """The objective's total for ``allocation`` (``evaluate(problem, allocation).total``)."""
    return evaluate(problem, allocation).total


def _who(allocation: Allocation) -> str:
    return repr(allocation.method) if allocation.method else "the allocation"


def _listing(items: list[str]) -> str:
    shown = "\n  ".join(items[:_SHOWN])
    more = f"\n  ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"\n  {shown}{more}"


def assert_valid(problem: Problem, allocation: Allocation) -> None:
    """``verify(problem, allocation)`` finds nothing wrong; else every violation is listed."""
    violations = verify(problem, allocation)
    if violations:
        raise AssertionError(
            f"{_who(allocation)} is not a valid allocation ({len(violations)} violations):"
            + _listing([str(v) for v in violations])
        )


def assert_no_job_lost(problem: Problem, allocation: Allocation, *, known_reasons: bool = False) -> None:
    """Every job of ``problem`` is placed or listed as unplaced, exactly once, and nothing else is.

    ``known_reasons=True`` also requires each unplaced job's reason to be a :class:`Reason` value
    (optalloc's engines use those; your scheduler may have its own).
    """
    names = {j.name for j in problem.jobs}
    placed = allocation.placed_jobs
    listed = [u.job for u in allocation.unplaced]
    problems: list[str] = []
    lost = sorted(names - placed - set(listed))
    if lost:
        problems.append(f"lost (neither placed nor unplaced): {', '.join(lost)}")
    both = sorted(placed & set(listed))
    if both:
        problems.append(f"placed and also listed as unplaced: {', '.join(both)}")
    twice = sorted({n for n in listed if listed.count(n) > 1})
    if twice:
        problems.append(f"listed as unplaced more than once: {', '.join(twice)}")
    strangers = sorted((placed | set(listed)) - names)
    if strangers:
        problems.append(f"not jobs of the problem: {', '.join(strangers)}")
    if known_reasons:
        valid = {r.value for r in Reason}
        odd = [f"{u.job} ({u.reason!r})" for u in allocation.unplaced if str(u.reason) not in valid]
        if odd:
            problems.append(f"reasons not in {sorted(valid)}: {', '.join(odd)}")
    if problems:
        raise AssertionError(f"{_who(allocation)} does not account for every job:" + _listing(problems))


def assert_optimal_dominates(problem: Problem, optimal: Allocation, others: Iterable[Allocation]) -> None:
    """No allocation in ``others`` has a higher objective than ``optimal`` on ``problem``.

    ``optimal`` is whatever you hold to be optimal (an exact method's answer with status
    ``optimal``, or a brute force on a tiny problem); a heuristic that beats it means one of the
    two is wrong. Objectives are recomputed with ``evaluate``, never read from the allocations.
    """
    best = objective(problem, optimal)
    beaten = []
    for other in others:
        value = objective(problem, other)
        if value > best:
            beaten.append(f"{_who(other)} reaches {value}, {value - best} above")
    if beaten:
        raise AssertionError(f"{_who(optimal)} is not optimal: objective {best}, yet" + _listing(beaten))


def assert_bound_holds(
    problem: Problem, allocation: Allocation, *, bound: float | None = None, rel_tol: float = 1e-9
) -> None:
    """A proven upper bound is at least the objective: ``bound >= evaluate(...).total``.

    ``bound`` defaults to ``allocation.bound`` (an exact method's best bound); an allocation with
    no bound to check fails (ask only of methods that prove one). ``rel_tol`` absorbs the floating
    point of LP bounds. The reported ``allocation.objective``, when set, must also be within it.
    """
    limit = allocation.bound if bound is None else bound
    if limit is None:
        raise AssertionError(f"{_who(allocation)} has no bound to check")
    slack = rel_tol * max(1.0, abs(float(limit)))
    value = objective(problem, allocation)
    if value > limit + slack:
        raise AssertionError(f"{_who(allocation)}: bound {limit} is below the objective {value} (evaluate)")
    if allocation.objective is not None and allocation.objective > limit + slack:
        raise AssertionError(
            f"{_who(allocation)}: bound {limit} is below its reported objective {allocation.objective}"
        )


def _permuted(items: tuple[Any, ...], rng: random.Random) -> tuple[Any, ...]:
    out = list(items)
    rng.shuffle(out)
    if len(out) > 1 and out == list(items):
        out.reverse()
    return tuple(out)


def assert_permutation_invariant(problem: Problem, solve_fn: SolveFn, *, seed: int = 0, rounds: int = 1) -> None:
    """The optimum does not depend on the order of nodes or jobs (exact methods only).

    Solves ``problem``, then ``rounds`` times a copy with the nodes shuffled, one with the jobs
    shuffled and one with both (shuffles from ``random.Random(seed)``), and compares the
    objectives (``evaluate``). Every answer must also be valid.
    """
    rng = random.Random(seed)
    reference = solve_fn(problem)
    assert_valid(problem, reference)
    expected = objective(problem, reference)
    for r in range(rounds):
        variants = {
            "nodes shuffled": problem.replace(nodes=_permuted(problem.nodes, rng)),
            "jobs shuffled": problem.replace(jobs=_permuted(problem.jobs, rng)),
        }
        variants["both shuffled"] = problem.replace(
            nodes=_permuted(problem.nodes, rng), jobs=_permuted(problem.jobs, rng)
        )
        for what, variant in variants.items():
            answer = solve_fn(variant)
            assert_valid(variant, answer)
            got = objective(variant, answer)
            if got != expected:
                order = [n.name for n in variant.nodes], [j.name for j in variant.jobs]
                raise AssertionError(
                    f"round {r}, {what}: objective {got}, in the original order {expected}"
                    f" (nodes {order[0]}, jobs {order[1]})"
                )


def _grown(problem: Problem, rng: random.Random) -> dict[str, Problem]:
    """Copies of ``problem`` with more capacity, one per way of adding it."""
    if not problem.nodes:
        return {"one node added": problem.replace(nodes=(Node("added-0", cpu=1000, memory=1024),))}
    k = rng.randrange(len(problem.nodes))
    node = problem.nodes[k]
    taken = {n.name for n in problem.nodes}
    name = "added-0"
    while name in taken:
        name += "-x"
    bigger = dataclasses.replace(
        node,
        cpu=node.cpu * 2 + 1000,
        memory=node.memory * 2 + 1024,
        gpu_memory=node.gpu_memory * 2 if node.gpu_memory else 0,
    )
    more_gpus = dataclasses.replace(node, gpus=node.gpus + 1) if node.gpus or node.gpu_model else None

    def swap(new: Node) -> tuple[Node, ...]:
        return (*problem.nodes[:k], new, *problem.nodes[k + 1 :])

    out = {
        f"node {node.name!r} copied as {name!r}": problem.replace(
            nodes=(*problem.nodes, dataclasses.replace(node, name=name))
        ),
        f"node {node.name!r} given more CPU, memory and GPU memory": problem.replace(nodes=swap(bigger)),
    }
    if more_gpus is not None:
        out[f"node {node.name!r} given one more GPU"] = problem.replace(nodes=swap(more_gpus))
    return out


def assert_monotone_in_capacity(problem: Problem, solve_fn: SolveFn, *, seed: int = 0) -> None:
    """Adding capacity never lowers the optimum (exact methods only).

    Every allocation of ``problem`` stays valid, with the same objective, on a copy with one node
    duplicated, one node given more CPU, memory and GPU memory, or one more GPU — so the optimum
    there is at least the optimum here. The node is drawn with ``random.Random(seed)``.
    """
    base = solve_fn(problem)
    assert_valid(problem, base)
    expected = objective(problem, base)
    for what, bigger in _grown(problem, random.Random(seed)).items():
        answer = solve_fn(bigger)
        assert_valid(bigger, answer)
        got = objective(bigger, answer)
        if got < expected:
            raise AssertionError(f"{what}: objective fell from {expected} to {got}")


def _problem_fields(problem: Problem) -> dict[str, Any]:
    current = problem.current
    return {
        "nodes": problem.nodes,
        "jobs": problem.jobs,
        "weights": problem.weights,
        "gpu_models": problem.gpu_models,
        "current.placements": None if current is None else current.placements,
        "current.unplaced": None if current is None else current.unplaced,
    }


def _first_difference(name: str, a: Any, b: Any) -> str | None:
    if a == b:
        return None
    if isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) != len(b):
            return f"{name}: {len(a)} items before, {len(b)} after"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = _first_difference(f"{name}[{i}]", x, y)
            if diff:
                return diff
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, Mapping) and isinstance(y, Mapping):
                x, y = dict(x), dict(y)
            if x != y:
                return f"{name}.{f.name}: {x!r} before, {y!r} after"
    return f"{name}: {a!r} before, {b!r} after"


def assert_same_problem(before: Problem, after: Problem) -> None:
    """``after`` holds the same nodes, jobs, weights, GPU model catalogue and current allocation."""
    a, b = _problem_fields(before), _problem_fields(after)
    for key in a:
        diff = _first_difference(key, a[key], b[key])
        if diff:
            raise AssertionError(f"problems differ: {diff}")


def assert_roundtrip(problem: Problem, path: str | PathLike[str]) -> None:
    """Writing ``problem`` to ``path`` and reading it back gives the same problem.

    Uses :func:`optalloc.io.write_problem` / :func:`optalloc.io.read_problem` (the format by the
    suffix: ``.json``, ``.yaml``); compares nodes, jobs, weights, the GPU model catalogue and the
    current placements field by field, naming the first difference.
    """
    from optalloc.io import read_problem, write_problem

    write_problem(problem, path)
    assert_same_problem(problem, read_problem(path))
