"""The plots of a comparison, as PNG files: GPU allocation and utilisation over time, the JCT CDF, and
the queue over time.

Drawn with matplotlib's object-oriented API (a ``Figure`` on its own ``FigureCanvasAgg``): the library
never selects a backend for the process nor touches pyplot's global figures, so a caller's own plotting
(a notebook, a GUI) is left alone. matplotlib is imported when a plot is drawn, not with this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optalloc.sim.metrics import GPU, binned, cdf
from optalloc.sim.result import SimResult

#: The files :func:`write_plots` writes (with the default prefix).
PLOTS = ("sim_utilisation.png", "sim_jct_cdf.png", "sim_queue.png")


def edges_of(results: Sequence[SimResult], bins: int) -> np.ndarray:
    start = min(r.metrics.start for r in results)
    end = max(r.metrics.end for r in results)
    return np.linspace(start, max(end, start + 1.0), max(2, bins) + 1)


def write_plots(
    folder: str | Path, results: Sequence[SimResult], *, bins: int = 400, prefix: str = "sim_"
) -> list[Path]:
    """The three PNG plots of a comparison: ``<prefix>utilisation.png``, ``<prefix>jct_cdf.png`` and
    ``<prefix>queue.png`` in ``folder``."""
    folder = Path(folder)
    edges = edges_of(results, bins)
    scale, unit = time_unit(float(edges[-1] - edges[0]))
    x = (edges[:-1] + edges[1:]) / 2
    x = (x - edges[0]) / scale
    out: list[Path] = []

    fig = _figure((10, 7))
    axes = fig.subplots(2, 1, sharex=True)
    for i, r in enumerate(results):
        tl = r.timeline
        cap = binned(tl, tl.capacity[:, GPU], edges)
        with np.errstate(all="ignore"):
            axes[0].plot(x, 100 * binned(tl, tl.allocated[:, GPU], edges) / cap, label=r.policy, **line_style(i))
            axes[1].plot(x, 100 * binned(tl, tl.used[:, GPU], edges) / cap, label=r.policy, **line_style(i))
    axes[0].set_ylabel("GPU allocation (%)")
    axes[1].set_ylabel("GPU utilisation, observed (%)")
    axes[1].set_xlabel(f"time since the first arrival ({unit})")
    axes[0].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("GPU allocation and utilisation over time")
    fig.tight_layout()
    out.append(_save(fig, folder / f"{prefix}utilisation.png"))

    fig = _figure((9, 5))
    ax = fig.subplots()
    all_jct = np.concatenate([r.jobs.jct for r in results]) if results else np.zeros(0)
    jscale, junit = time_unit(float(np.median(all_jct)) * 4 if len(all_jct) else 1.0)
    for i, r in enumerate(results):
        xs, ys = cdf(r.jobs.jct / jscale)
        if len(xs):
            ax.step(xs, ys, where="post", label=r.policy, **line_style(i))
    ax.set_xscale("symlog" if len(all_jct) and np.nanmin(all_jct) <= 0 else "log")
    ax.set_xlabel(f"job completion time ({junit}, log scale)")
    ax.set_ylabel("fraction of finished jobs")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title("JCT CDF")
    fig.tight_layout()
    out.append(_save(fig, folder / f"{prefix}jct_cdf.png"))

    fig = _figure((10, 4.5))
    ax = fig.subplots()
    for i, r in enumerate(results):
        ax.plot(x, binned(r.timeline, r.timeline.waiting, edges), label=r.policy, **line_style(i))
    ax.set_xlabel(f"time since the first arrival ({unit})")
    ax.set_ylabel("waiting jobs (time-averaged)")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Queue length over time")
    fig.tight_layout()
    out.append(_save(fig, folder / f"{prefix}queue.png"))
    return out


def line_style(i: int) -> dict[str, Any]:
    """The ``i``-th policy's line: matplotlib's ten default colours, then the same colours dashed,
    dotted and dash-dotted, so that no two of up to forty policies look alike."""
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[(i // 10) % 4], "lw": 1}


def _figure(size: tuple[float, float]) -> Any:
    """A figure drawn by its own Agg canvas: no pyplot, no backend chosen for the process, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def time_unit(span: float) -> tuple[float, str]:
    if span >= 3 * 86400:
        return 86400.0, "days"
    if span >= 3 * 3600:
        return 3600.0, "hours"
    if span >= 180:
        return 60.0, "minutes"
    return 1.0, "seconds"
