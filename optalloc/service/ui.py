"""The dashboard, rendered on the server: plain HTML, every name escaped here and nowhere else.

``page(data, refresh)`` is the whole page; ``fragment(data)`` its live part, which the page's small
script (``static/ui.js``) fetches from ``/ui/fragment`` every few seconds and swaps in. ``data`` is the
dictionary of ``GET /v1/cluster``. No library, no CDN: the page needs nothing but this service.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any


def e(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def color(job: str) -> str:
    """A stable colour per job name."""
    hue = int(hashlib.blake2s(job.encode("utf-8", "surrogatepass"), digest_size=2).hexdigest(), 16) % 360
    return f"hsl({hue} 65% 55%)"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _bar(label: str, used: int, total: int, unit: str) -> str:
    share = 0.0 if total <= 0 else min(1.0, used / total)
    return (
        f'<div class="bar" title="{e(label)}: {used} / {total} {e(unit)}">'
        f'<span class="bar-label">{e(label)}</span>'
        f'<span class="bar-track"><span class="bar-fill" style="width:{100 * share:.1f}%"></span></span>'
        f'<span class="bar-text">{_pct(share)}</span></div>'
    )


def _gpu(gpu: Mapping[str, Any]) -> str:
    parts = []
    for job, milli in sorted(gpu["jobs"].items()):
        width = min(100.0, milli / 10)
        kind = "whole" if milli >= 1000 else "share"
        parts.append(
            f'<span class="gpu-job {kind}" data-job="{e(job)}" style="width:{width:.1f}%;background:{color(job)}" '
            f'title="{e(job)}: {milli} milli-GPU">{e(job) if milli >= 250 else ""}</span>'
        )
    return (
        f'<div class="gpu" data-gpu="{int(gpu["index"])}" title="GPU {int(gpu["index"])}: {int(gpu["used_milli"])}/1000">'
        f'<span class="gpu-index">{int(gpu["index"])}</span>{"".join(parts)}</div>'
    )


def _node(item: Mapping[str, Any]) -> str:
    node = item["node"]
    name = node["name"]
    model = node.get("gpu_model") or ""
    gpus = "".join(_gpu(g) for g in item["gpus"]) or '<div class="no-gpu">no GPU</div>'
    badge = '<span class="badge drained">drained</span>' if item["drained"] else ""
    jobs = ", ".join(e(j) for j in item["jobs"]) or "—"
    return (
        f'<section class="node{" is-drained" if item["drained"] else ""}" data-node="{e(name)}">'
        f'<header><strong>{e(name)}</strong> <span class="model">{e(model)}</span> {badge}</header>'
        f'<div class="gpus">{gpus}</div>'
        f"{_bar('CPU', int(item['cpu_used']), int(node.get('cpu', 0)), 'milli-cores')}"
        f"{_bar('Memory', int(item['memory_used']), int(node.get('memory', 0)), 'MiB')}"
        f'<footer class="jobs" title="jobs on this node">{jobs}</footer></section>'
    )


def _when(stamp: float | None) -> str:
    return "–" if stamp is None else time.strftime("%H:%M:%S", time.localtime(stamp))


def _rows(rows: Sequence[str], columns: Sequence[str], empty: str) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(rows) if rows else f'<tr><td colspan="{len(columns)}" class="empty">{e(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fragment(data: Mapping[str, Any]) -> str:
    """The live part of the page."""
    solve = data["last_solve"]
    drift = data["drift"]
    drift_text = "no observation yet" if drift is None else f"{drift:.3f}"
    if data["stale"]:
        drift_text += f" (stale: {data['monitor_error']})"
    gap = solve["gap"]
    stats = [
        ("plan", f"v{solve['version']} at {_when(solve['time'])}"),
        ("trigger", solve["trigger"] or "–"),
        ("method", (solve["method"] or "–") + (f" (fallback: {solve['fallback']})" if solve["fallback"] else "")),
        ("status", solve["status"] or "–"),
        ("objective", _num(solve["objective"], 6)),
        ("bound", _num(solve["bound"], 6)),
        ("gap", "–" if gap is None else f"{100 * gap:.2f}%"),
        ("solve time / budget", f"{solve['solve_time']:.3f}s / {solve['budget']:g}s"),
        ("drift", drift_text),
        ("running", str(data["running"])),
        ("waiting", str(len(data["queue"]))),
        ("GPU allocated", _pct(data["gpu_allocation_ratio"])),
        ("CPU allocated", _pct(data["cpu_allocation_ratio"])),
        ("memory allocated", _pct(data["memory_allocation_ratio"])),
    ]
    cards = "".join(
        f'<div class="stat" data-stat="{e(k)}"><span class="k">{e(k)}</span><span class="v">{e(v)}</span></div>'
        for k, v in stats
    )
    nodes = "".join(_node(item) for item in data["nodes"]) or '<p class="empty">no node registered</p>'
    queue = [
        f'<tr data-job="{e(j["name"])}"><td>{e(j["name"])}</td><td>{e(j["state"])}</td>'
        f"<td>{e(j.get('reason') or '')}</td><td>{e(j.get('detail') or '')}</td>"
        f"<td>{_when(j['submitted'])}</td></tr>"
        for j in data["queue"]
    ]
    decisions = [
        f"<tr><td>{_when(d['time'])}</td><td>{e(d['kind'])}</td><td>{e(d['job'])}</td><td>{e(d['reason'])}</td></tr>"
        for d in data["decisions"]
    ]
    return (
        f'<div class="stats">{cards}</div>'
        f'<h2>Nodes</h2><div class="nodes">{nodes}</div>'
        f'<div class="tables"><div><h2>Waiting jobs</h2><div id="queue">'
        f"{_rows(queue, ('job', 'state', 'reason', 'detail', 'submitted'), 'no job waits')}</div></div>"
        f'<div><h2>Recent decisions</h2><div id="decisions">'
        f"{_rows(decisions, ('time', 'action', 'job', 'reason'), 'no decision yet')}</div></div></div>"
    )


def page(data: Mapping[str, Any], refresh: float) -> str:
    """The whole dashboard page."""
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>optalloc</title>"
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/ui/static/ui.css"></head>'
        f'<body data-refresh="{refresh:g}"><header class="top"><h1>optalloc</h1>'
        '<span id="updated" class="updated"></span></header>'
        f'<main id="live">{fragment(data)}</main>'
        '<script src="/ui/static/ui.js"></script></body></html>'
    )
