"""Allocation files (JSON or YAML by suffix), in the shape other tools read:

.. code-block:: json

    {"summary": {"method": "best-fit", "status": "feasible", "objective": 1500.0, ...},
     "placements": [{"job": "a", "replica": 0, "node": "n1", "gpus": [0, 1], "gpu_milli": 1000}],
     "unplaced": [{"job": "b", "reason": "fits no node", "detail": "..."}]}

``gpu_milli`` is the milli-GPU taken on each listed GPU: 1000 for whole GPUs, the share for a sharing
replica, 0 with ``gpus: []`` for a CPU-only one. ``summary`` is ``allocation.summary(problem)`` when
the problem is given, else the figures the allocation knows alone (method, status, objective,
bound, gap, wall_time); solver ``stats``, when any, are kept under ``summary.stats``. Reading back
restores method, status, objective, bound, wall_time and stats; the other summary figures are
derived and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optalloc.core import Allocation, Placement, Problem, ProblemError, Reason, Unplaced, _check
from optalloc.io import _documents as doc
from optalloc.io._table import StrPath

ALLOCATION_KEYS = ("summary", "placements", "unplaced")
PLACEMENT_KEYS = ("job", "replica", "node", "gpus", "gpu_milli")
UNPLACED_KEYS = ("job", "reason", "detail")
RESTORED_SUMMARY_KEYS = ("method", "status", "objective", "bound", "wall_time", "stats")

__all__ = ["allocation_from_dict", "allocation_to_dict", "read_allocation", "write_allocation"]


def allocation_to_dict(allocation: Allocation, problem: Problem | None = None) -> dict[str, Any]:
    """The allocation file's content (plain JSON types)."""
    if problem is not None:
        summary: dict[str, Any] = allocation.summary(problem).to_dict()
    else:
        summary = {
            "method": allocation.method,
            "status": allocation.status.value,
            "objective": allocation.objective,
            "bound": allocation.bound,
            "gap": allocation.gap,
            "wall_time": allocation.wall_time,
        }
    if allocation.stats:
        summary["stats"] = dict(allocation.stats)
    out = {"summary": summary, **allocation.to_dict()}
    result: dict[str, Any] = doc.plain(out)
    return result


def allocation_from_dict(data: Any, path: str = "") -> Allocation:
    """An :class:`Allocation` from a file's content; errors name the path (``placements[3].gpus``)."""
    top = doc.mapping(path, data, "an allocation: summary, placements, unplaced")
    doc.known_keys(path, top, ALLOCATION_KEYS, "allocation")
    info: dict[str, Any] = {}
    if top.get("summary") is not None:
        info = _summary(doc.join(path, "summary"), top["summary"])
    placements = [
        _placement(doc.join(doc.join(path, "placements"), i), item)
        for i, item in enumerate(doc.listing(doc.join(path, "placements"), top.get("placements", []), "of placements"))
    ]
    unplaced = [
        _unplaced(doc.join(doc.join(path, "unplaced"), i), item)
        for i, item in enumerate(doc.listing(doc.join(path, "unplaced"), top.get("unplaced", []), "of unplaced jobs"))
    ]
    try:
        return Allocation(tuple(placements), tuple(unplaced), **info)
    except ProblemError as err:
        raise err.prefixed(doc.join(path, "summary")) from None


def read_allocation(path: StrPath) -> Allocation:
    """Read an allocation file (``.json``, ``.yaml``, ``.yml``)."""
    data = doc.load(path)
    try:
        return allocation_from_dict(data)
    except ProblemError as err:
        raise doc.in_file(_label(path), err) from None


def write_allocation(allocation: Allocation, path: StrPath, problem: Problem | None = None) -> None:
    """Write an allocation file; with ``problem`` the summary carries every figure of ``summary()``."""
    doc.dump(allocation_to_dict(allocation, problem), path)


# Internals -----------------------------------------------------------------------------------
def _label(path: StrPath) -> str:
    return Path(path).name


def _summary(path: str, value: Any) -> dict[str, Any]:
    summary = doc.mapping(path, value, "the allocation's summary")
    out: dict[str, Any] = {}
    if "method" in summary:
        method = summary["method"]
        if method is not None and not isinstance(method, str):
            raise ProblemError(doc.join(path, "method"), method, "is not a method name")
        out["method"] = method or ""
    if "status" in summary:
        out["status"] = summary["status"]
    for key in ("objective", "bound"):
        if key in summary:
            out[key] = _number(doc.join(path, key), summary[key], optional=True)
    if "wall_time" in summary:
        out["wall_time"] = _number(doc.join(path, "wall_time"), summary["wall_time"], optional=False)
    if summary.get("stats") is not None:
        out["stats"] = doc.mapping(doc.join(path, "stats"), summary["stats"], "solver statistics")
    return out


def _number(path: str, value: Any, *, optional: bool) -> float | None:
    try:
        return _check.real(path, value, optional=optional)
    except ProblemError:
        raise ProblemError(path, value, "is not a number" + (" or null" if optional else "")) from None


def _placement(path: str, value: Any) -> Placement:
    item = doc.mapping(path, value, "a placement: job, replica, node, gpus, gpu_milli")
    doc.known_keys(path, item, PLACEMENT_KEYS, "placement")
    doc.required(path, item, ("job", "node"))
    gpus = item.get("gpus", [])
    if gpus is None:
        gpus = []
    if not isinstance(gpus, list):
        raise ProblemError(doc.join(path, "gpus"), gpus, "is not a list of GPU indices")
    milli = item.get("gpu_milli", 1000 if gpus else 0)
    try:
        return Placement(item["job"], item.get("replica", 0), item["node"], tuple(gpus), milli)
    except ProblemError as err:
        raise err.prefixed(path) from None


def _unplaced(path: str, value: Any) -> Unplaced:
    item = doc.mapping(path, value, "an unplaced job: job, reason, detail")
    doc.known_keys(path, item, UNPLACED_KEYS, "unplaced job")
    doc.required(path, item, ("job", "reason"))
    reason = item["reason"]
    detail = item.get("detail", "")
    if detail is None:
        detail = ""
    if not isinstance(detail, str):
        raise ProblemError(doc.join(path, "detail"), detail, "is not a string")
    if not isinstance(reason, str) or not reason:
        raise ProblemError(doc.join(path, "reason"), reason, "is not a reason")
    if reason not in _REASONS:
        raise ProblemError(doc.join(path, "reason"), reason, f"is not one of {', '.join(_REASONS)}")
    try:
        return Unplaced(item["job"], _REASONS[reason], _check.text("detail", detail, max_length=None))
    except ProblemError as err:
        raise err.prefixed(path) from None


_REASONS: Mapping[str, Reason] = {r.value: r for r in Reason}
