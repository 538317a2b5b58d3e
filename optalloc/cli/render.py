"""Rich tables for the CLI: an allocation's summary, a comparison of methods, the unplaced jobs."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table

from optalloc import Allocation, Problem


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    """A ratio as a percentage with two decimals; a positive value never prints as 0.00%."""
    if value is None:
        return "-"
    if 0 < value < 0.00005:
        return "<0.01%"  # not proven optimal: never print a positive gap as 0.00%
    return f"{100 * value:.2f}%"


def summary_table(problem: Problem, allocation: Allocation, *, title: str = "Allocation") -> Table:
    s = allocation.summary(problem)
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("method", s.method),
        ("status", s.status),
        ("objective", _num(s.objective)),
        ("bound", _num(s.bound)),
        ("gap", percent(s.gap)),
        ("wall time", f"{s.wall_time:.3f} s"),
        ("jobs placed", f"{s.jobs_placed} of {s.jobs}"),
        ("jobs unplaced", ", ".join(f"{n} {r}" for r, n in sorted(s.unplaced_by_reason.items())) or "0"),
        (
            "GPU allocated",
            f"{s.gpu_milli_allocated / 1000:,.2f} of {s.gpu_milli_capacity / 1000:,.0f} GPUs ({percent(s.gpu_allocation_ratio)})",
        ),
        ("GPU requested", f"{s.gpu_milli_requested / 1000:,.2f} GPUs"),
        ("CPU / memory allocated", f"{percent(s.cpu_allocation_ratio)} / {percent(s.memory_allocation_ratio)}"),
        ("nodes used", f"{s.nodes_used} of {s.nodes}"),
        ("fragmentation (FGD)", f"{s.fragmentation / 1000:,.2f} GPUs ({percent(s.fragmentation_ratio)} of free)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def comparison_table(problem: Problem, answers: Sequence[Allocation], *, title: str = "Methods side by side") -> Table:
    """GPU = allocated share of the cluster's GPUs; out = jobs left out; frag = FGD fragmentation in GPUs."""
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    for column in ("method", "status", "objective", "gap", "GPU", "placed", "out", "frag", "time"):
        table.add_column(column, justify="left" if column in ("method", "status") else "right", no_wrap=True)
    for a in answers:
        s = a.summary(problem)
        table.add_row(
            s.method,
            s.status,
            _num(s.objective),
            percent(s.gap),
            f"{100 * s.gpu_allocation_ratio:.1f}%",
            str(s.jobs_placed),
            str(s.jobs_unplaced),
            f"{s.fragmentation / 1000:,.1f}",
            f"{s.wall_time:.2f}s",
        )
    return table


def unplaced_table(allocation: Allocation, limit: int) -> Table:
    table = Table(title=f"Unplaced jobs (first {limit})", title_justify="left")
    table.add_column("job")
    table.add_column("reason")
    table.add_column("detail")
    for u in allocation.unplaced[:limit]:
        table.add_row(u.job, str(u.reason), u.detail)
    return table
