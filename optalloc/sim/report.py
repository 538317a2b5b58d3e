"""Writing what a comparison found: JSON and CSV results, PNG plots, and a markdown report.

:func:`write` puts into one directory:

- ``results.json``: the scenario, the simulation settings, and per policy its metrics and counters;
- ``metrics.csv``: one row per policy; ``jobs.csv``: one row per (policy, job); ``timeline.csv``: per
  policy the time-averaged cluster state over ``bins`` equal intervals;
- ``sim_utilisation.png`` (GPU allocation and observed utilisation over time), ``sim_jct_cdf.png``
  (the CDF of job completion times), ``sim_queue.png`` (waiting jobs over time):
  :mod:`optalloc.sim.plots`;
- ``report.md``: the comparison table and the plots.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optalloc.sim.config import SimConfig
from optalloc.sim.metrics import GPU, Metrics, binned
from optalloc.sim.plots import PLOTS, edges_of, write_plots
from optalloc.sim.result import SimResult
from optalloc.sim.workloads import Scenario

METRIC_COLUMNS = (
    "avg_jct",
    "p50_jct",
    "p99_jct",
    "avg_queueing_delay",
    "p99_queueing_delay",
    "makespan",
    "gpu_allocation",
    "cpu_allocation",
    "memory_allocation",
    "gpu_utilisation",
    "cpu_utilisation",
    "memory_utilisation",
    "fragmentation",
    "fragmentation_ratio",
    "waiting_ratio",
    "completion_rate",
    "jobs",
    "finished",
    "rejected",
    "unfinished",
    "unplaceable",
    "preemptions",
    "migrations",
    "failure_restarts",
    "fallbacks",
    "solver_time",
    "solver_time_share",
    "solver_time_per_hour",
    "events",
    "steps",
    "wall_time",
    "events_per_second",
)


def write(
    out: str | Path,
    scenario: Scenario,
    results: Sequence[SimResult],
    config: SimConfig,
    *,
    command: str = "",
    bins: int = 400,
    plots: bool = True,
) -> list[Path]:
    """Write every output of a comparison into ``out`` (created); returns the files written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        _write_json(folder / "results.json", scenario, results, config, command),
        _write_metrics_csv(folder / "metrics.csv", results),
        _write_jobs_csv(folder / "jobs.csv", results),
        _write_timeline_csv(folder / "timeline.csv", results, bins),
    ]
    if plots and results:
        files += write_plots(folder, results, bins=bins)
    files.append(_write_markdown(folder / "report.md", scenario, results, config, command, plots=plots))
    return files


# Tables ---------------------------------------------------------------------------------------


def _config_dict(config: SimConfig) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(asdict(config), default=str))
    return out


def _write_json(path: Path, scenario: Scenario, results: Sequence[SimResult], config: SimConfig, command: str) -> Path:
    data = {
        "command": command,
        "scenario": scenario.describe(),
        "config": _config_dict(config),
        "policies": [r.to_dict() for r in results],
    }
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _write_metrics_csv(path: Path, results: Sequence[SimResult]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["policy", *METRIC_COLUMNS])
        for r in results:
            d = r.metrics.to_dict()
            writer.writerow([r.policy, *("" if d[c] is None else d[c] for c in METRIC_COLUMNS)])
    return path


def _write_jobs_csv(path: Path, results: Sequence[SimResult]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer: csv.DictWriter[str] | None = None
        for r in results:
            for row in r.jobs.to_rows():
                row = {"policy": r.policy, **row}
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def _write_timeline_csv(path: Path, results: Sequence[SimResult], bins: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "policy",
                "start",
                "end",
                "gpu_capacity",
                "gpu_allocated",
                "gpu_used",
                "waiting",
                "running",
                "fragmentation",
            ]
        )
        if not results:
            return path
        edges = edges_of(results, bins)
        for r in results:
            tl = r.timeline
            series = [
                binned(tl, tl.capacity[:, GPU] / 1000.0, edges),
                binned(tl, tl.allocated[:, GPU] / 1000.0, edges),
                binned(tl, tl.used[:, GPU] / 1000.0, edges),
                binned(tl, tl.waiting, edges),
                binned(tl, tl.running, edges),
                binned(tl, tl.fragmentation / 1000.0, edges),
            ]
            for i in range(len(edges) - 1):
                values = [round(float(s[i]), 4) if math.isfinite(s[i]) else "" for s in series]
                writer.writerow([r.policy, round(float(edges[i]), 3), round(float(edges[i + 1]), 3), *values])
    return path


# Markdown -------------------------------------------------------------------------------------


def table(results: Sequence[SimResult], *, baseline: str | None = None) -> str:
    """The comparison as a markdown table (times in hours, the unit of ``optalloc simulate``'s table)."""
    if not results:
        return "(no policy)\n"
    base = next((r for r in results if r.policy == baseline), None) if baseline else None
    scale, u = 3600.0, "h"
    head = [
        "policy",
        f"avg JCT ({u})",
        "vs base" if base is not None else None,
        f"p50 JCT ({u})",
        f"p99 JCT ({u})",
        f"avg queueing ({u})",
        f"makespan ({u})",
        "GPU alloc %",
        "GPU util %",
        "frag (GPUs)",
        "waiting ratio",
        "completion %",
        "unplaceable",
        "preempt",
        "migr",
        "fallbacks",
        "solver s",
        "solver s / sim h",
        "events/s",
    ]
    cols = [h for h in head if h is not None]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "policy" else "---:" for c in cols) + "|"]
    for r in results:
        m = r.metrics
        row: list[str] = [r.policy, _t(m.avg_jct, scale)]
        if base is not None:
            ratio = m.avg_jct / base.metrics.avg_jct if base.metrics.avg_jct else math.nan
            row.append(_f(ratio, 2) + "x")
        row += [
            _t(m.p50_jct, scale),
            _t(m.p99_jct, scale),
            _t(m.avg_queueing_delay, scale),
            _t(m.makespan, scale),
            _f(100 * m.gpu_allocation, 1),
            _f(100 * m.gpu_utilisation, 1),
            _f(m.fragmentation, 2),
            _f(m.waiting_ratio, 2),
            _f(100 * m.completion_rate, 1),
            str(m.unplaceable),
            str(m.preemptions),
            str(m.migrations),
            str(m.fallbacks),
            _f(m.solver_time, 1),
            _f(m.solver_time_per_hour, 3),
            _f(m.events_per_second, 0),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _write_markdown(
    path: Path,
    scenario: Scenario,
    results: Sequence[SimResult],
    config: SimConfig,
    command: str,
    *,
    plots: bool,
) -> Path:
    d = scenario.describe()
    baseline = "fcfs+best-fit" if any(r.policy == "fcfs+best-fit" for r in results) else None
    lines = [f"# Simulation: {scenario.name}", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        f"Scenario: {d['description']}. {d['nodes']} nodes, {d['gpus']} GPUs, {d['jobs']} jobs over "
        f"{d['span_s'] / 3600:.1f} h of arrivals.",
        "",
        f"Simulation: tick {config.tick:g} s ({'steps at every event and tick' if config.react else 'steps at ticks only'}), "
        f"restart penalty {config.restart_penalty:g} s ({'progress kept' if config.keep_progress else 'progress lost'}), "
        f"usage profile {_profile(config)}, seed {config.seed}"
        + (
            f", node failures MTBF {config.failures.mtbf:g} s repair {config.failures.repair:g} s"
            if config.failures
            else ""
        )
        + (f", stopped at t = {config.until:g} s" if config.until is not None else "")
        + ".",
        "",
        table(results, baseline=baseline),
        "Definitions: docs/simulator.md (JCT and queueing delay as Tiresias/Gavel, allocation ratio and "
        "fragmentation as FGD, ATC'23). 'vs base' is the average JCT over the first table row's "
        "(fcfs+best-fit) when present. GPU alloc and util are time-weighted over the run. 'fallbacks': "
        "solves where the fallback heuristic stood in for the policy's method (it had no answer in its time "
        "limit, proved infeasible, or was unavailable).",
        "",
    ]
    fell_back = [r for r in results if r.counters.fallbacks]
    if fell_back:
        lines += [
            "Fallbacks by reason: "
            + "; ".join(
                f"{r.policy} " + ", ".join(f"{k} {v}" for k, v in r.counters.fallback_reasons.items())
                for r in fell_back
            )
            + ".",
            "",
        ]
    for r in results:
        lines.append(f"- **{r.policy}**: {r.description}")
    lines.append("")
    if plots:
        lines += [f"![{p}]({p})" for p in PLOTS]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _profile(config: SimConfig) -> str:
    p = config.profile
    return f"(GPU {p.gpu:g}, CPU {p.cpu:g}, memory {p.memory:g} of the request on average, swing {p.swing:g})"


def _t(seconds: float, scale: float) -> str:
    return _f(seconds / scale, 2) if math.isfinite(seconds) else "-"


def _f(value: float, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def metric_names() -> tuple[str, ...]:
    """Every field of :class:`Metrics` (for tools that read metrics.csv)."""
    return tuple(f for f in Metrics.__dataclass_fields__ if f != "extra")
