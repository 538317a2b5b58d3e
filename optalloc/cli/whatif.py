"""What-if edits of a problem for capacity planning: add nodes like an existing one, remove a GPU model."""

from __future__ import annotations

from dataclasses import replace

from optalloc import Node, Problem, ProblemError


def parse_add(spec: str) -> tuple[str, int]:
    """``NODE=COUNT`` -> (node name, count)."""
    name, sep, count = spec.partition("=")
    if not sep or not name or not count.isdigit() or int(count) < 1:
        raise ProblemError("--add-like", spec, "is not NODE=COUNT (e.g. openb-node-0310=10)")
    return name, int(count)


def add_like(problem: Problem, node: str, count: int, *, option: str = "--add-like") -> Problem:
    """``problem`` with ``count`` more nodes shaped like ``node`` (named ``<node>+1``, ``<node>+2``...).

    ``option`` names the command-line option in the error when ``node`` is not a node of the problem."""
    if node not in problem.node_index:
        raise ProblemError(option, node, "is not a node of the problem")
    shape = problem.nodes[problem.node_index[node]]
    extra = [replace(shape, name=f"{node}+{i}") for i in range(1, count + 1)]
    return problem.replace(nodes=problem.nodes + tuple(extra))


def remove_model(problem: Problem, model: str) -> Problem:
    """``problem`` without the nodes of GPU model ``model`` (jobs that need it become unplaceable)."""
    if model not in (problem.gpu_models or ()):
        known = ", ".join(sorted(problem.gpu_models or ())) or "none"
        raise ProblemError("--remove-model", model, f"is not a GPU model of the cluster (known: {known})")
    kept = tuple(n for n in problem.nodes if n.gpu_model != model or not n.gpus)
    current = problem.current
    if current is not None:
        gone = {n.name for n in problem.nodes} - {n.name for n in kept}
        current = current.replace(placements=tuple(p for p in current.placements if p.node not in gone))
    return problem.replace(nodes=kept, current=current)


def with_nodes(problem: Problem, nodes: list[Node]) -> Problem:
    return problem.replace(nodes=problem.nodes + tuple(nodes))
