"""Generic CSV import of nodes and jobs, for exports from a platform's own inventory.

The header names :class:`Node` or :class:`Job` fields; only ``name`` is required and an empty cell
takes the field's default. In a CSV a bare integer is in canonical units (CPU milli-cores, memory and
GPU memory MiB), like a JSON number; a cell with a unit is a Kubernetes quantity (``500m``, ``16Gi``,
``1G``). ``gpu_models`` is written ``A100|V100``; ``labels`` and ``node_selector`` are written
``zone=a;tier=gpu``; ``preemptible`` is true/false (also yes/no, 1/0). Every bad cell raises
:class:`ProblemError` naming the file, the line (header = line 1) and the column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from optalloc.core import LIMITS, Job, Node, ProblemError
from optalloc.io import units
from optalloc.io._table import StrPath, Table, read_table
from optalloc.io.problem_file import JOB_KEYS, NODE_KEYS

__all__ = ["read_jobs_csv", "read_nodes_csv"]

_BARE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


def read_nodes_csv(path: StrPath) -> list[Node]:
    """Nodes from a CSV whose columns are Node fields (name, cpu, memory, gpus, gpu_model, gpu_memory, labels)."""
    table = read_table(path, required=("name",), max_rows=LIMITS.nodes)
    _known_columns(table, NODE_KEYS, "node")
    parsers: dict[str, Callable[[Table, int, str, str], Any]] = {
        "cpu": lambda t, ln, c, s: _quantity(t, ln, c, s, units.cpu_milli, capacity=True),
        "memory": lambda t, ln, c, s: _quantity(t, ln, c, s, units.memory_mib, capacity=True),
        "gpu_memory": lambda t, ln, c, s: _quantity(t, ln, c, s, units.memory_mib, capacity=True),
        "gpus": lambda t, ln, c, s: t.integer(ln, c, s),
        "gpu_model": lambda t, ln, c, s: s.strip(),
        "labels": _pairs,
    }
    nodes: list[Node] = _objects(table, parsers, Node)
    return nodes


def read_jobs_csv(path: StrPath) -> list[Job]:
    """Jobs from a CSV whose columns are Job fields (name, cpu, memory, gpus, gpu_milli, replicas, ...)."""
    table = read_table(path, required=("name",))
    _known_columns(table, JOB_KEYS, "job")
    parsers: dict[str, Callable[[Table, int, str, str], Any]] = {
        "cpu": lambda t, ln, c, s: _quantity(t, ln, c, s, units.cpu_milli, capacity=False),
        "memory": lambda t, ln, c, s: _quantity(t, ln, c, s, units.memory_mib, capacity=False),
        "gpu_memory": lambda t, ln, c, s: _quantity(t, ln, c, s, units.memory_mib, capacity=False),
        "gpus": lambda t, ln, c, s: t.integer(ln, c, s),
        "gpu_milli": lambda t, ln, c, s: t.integer(ln, c, s),
        "replicas": lambda t, ln, c, s: t.integer(ln, c, s, minimum=1),
        "min_replicas": lambda t, ln, c, s: t.integer(ln, c, s, minimum=1),
        "priority": lambda t, ln, c, s: t.integer(ln, c, s, minimum=None),
        "arrival": lambda t, ln, c, s: t.number(ln, c, s),
        "duration": lambda t, ln, c, s: t.number(ln, c, s, minimum=0),
        "gpu_models": lambda t, ln, c, s: frozenset(m.strip() for m in s.split("|") if m.strip()),
        "node_selector": _pairs,
        "placement": lambda t, ln, c, s: s.strip(),
        "preemptible": _boolean,
    }
    jobs: list[Job] = _objects(table, parsers, Job)
    return jobs


# Internals -----------------------------------------------------------------------------------
def _known_columns(table: Table, known: tuple[str, ...], what: str) -> None:
    for column in table.header:
        if column not in known:
            raise ProblemError(
                f"{table.label} line 1", column, f"is not {_article(what)} {what} field (known: {', '.join(known)})"
            )


def _objects(table: Table, parsers: dict[str, Callable[[Table, int, str, str], Any]], kind: type) -> list[Any]:
    """One ``kind`` per row, built from the parsed cells (the core's errors placed in the file)."""
    columns = [(c, table.index[c], parsers.get(c)) for c in table.header]
    out: list[Any] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        kwargs: dict[str, Any] = {}
        for column, pos, parse in columns:
            text = row[pos]
            if not text.strip():
                continue
            kwargs[column] = text.strip() if parse is None else parse(table, line, column, text)
        name = kwargs.get("name", "")
        if name in seen:
            raise table.error(line, "name", name, f"duplicates line {seen[name]}")
        seen[name] = line
        try:
            out.append(kind(**kwargs))
        except ProblemError as err:
            raise table.wrap(line, err) from None
        except TypeError as err:  # pragma: no cover - columns are checked against the fields
            raise table.error(line, None, str(err), "is not a valid row") from None
    return out


def _quantity(table: Table, line: int, column: str, text: str, convert: Callable[..., int], *, capacity: bool) -> int:
    if _BARE.match(text):
        try:
            return table.integer(line, column, text.strip())
        except ProblemError as err:
            if err.reason != "is not an integer":
                raise
            hint = "milli-cores; or cores with a unit, e.g. 2500m" if column == "cpu" else "MiB; or a unit, e.g. 1.5Gi"
            raise table.error(line, column, text.strip(), f"is not an integer ({hint})") from None
    try:
        return convert(text.strip(), column, capacity=capacity)
    except ProblemError as err:
        raise table.error(line, column, err.value, err.reason) from None


def _pairs(table: Table, line: int, column: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise table.error(line, column, item.strip(), "is not a key=value pair (write k=v;k2=v2)")
        out[key.strip()] = value.strip()
    return out


def _boolean(table: Table, line: int, column: str, text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise table.error(line, column, text, "is not true or false")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
