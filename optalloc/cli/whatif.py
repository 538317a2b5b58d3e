"""What-if edits of a problem for capacity planning: add nodes like an existing one, remove a GPU model."""

from __future__ import annotations

from dataclasses import replace

from optalloc import Node, Problem, ProblemError
from optalloc.core import LIMITS


def parse_add(spec: str) -> tuple[str, int]:
    """``NODE=COUNT`` -> (node name, count)."""
    name, sep, count = spec.rpartition("=")
    if not sep or not name or not count.isdigit() or not count.isascii() or int(count[:12]) < 1:
        raise ProblemError("--add-like", spec, "is not NODE=COUNT (e.g. openb-node-0310=10)")
    if len(count) > 12 or int(count) > LIMITS.nodes:
        raise ProblemError("--add-like", spec, f"adds more than {LIMITS.nodes:,} nodes, the limit (docs/limits.md)")
    return name, int(count)


def add_like(problem: Problem, node: str, count: int, *, option: str = "--add-like") -> Problem:
    """``problem`` with ``count`` more nodes shaped like ``node`` (named ``<node>+1``, ``<node>+2``...).

    ``option`` names the command-line option in the error when ``node`` is not a node of the problem."""
    if node not in problem.node_index:
        raise ProblemError(option, node, "is not a node of the problem")
    if len(problem.nodes) + count > LIMITS.nodes:  # before any node is built
        raise ProblemError(
            option,
            f"{node}={count}",
            f"makes {len(problem.nodes) + count:,} nodes, more than the limit of {LIMITS.nodes:,} (docs/limits.md)",
        )
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


def describe_add(problem: Problem, node: str, count: int) -> str:
    """What :func:`add_like` changed, in one line."""
    shape = problem.nodes[problem.node_index[node]]
    gpus = f", {count * shape.gpus} {shape.gpu_model or ''} GPUs".replace("  ", " ") if shape.gpus else ""
    return f"what-if: added {count} node(s) like {node} ({node}+1..{node}+{count}{gpus})"


def describe_remove(before: Problem, after: Problem, model: str) -> str:
    """What :func:`remove_model` changed, in one line."""
    gone = len(before.nodes) - len(after.nodes)
    gpus = int(before.node_gpus.sum() - after.node_gpus.sum())
    line = f"what-if: removed {gone} node(s) with {model} GPUs ({gpus} GPUs)"
    if before.current is not None and after.current is not None:
        dropped = len(before.current.placements) - len(after.current.placements)
        if dropped:
            line += f"; {dropped} running replica(s) on them are no longer running"
    return line
