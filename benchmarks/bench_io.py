"""Benchmark of optalloc.io: reading the openb traces, building the numpy views, problem files.

Run: ``python benchmarks/bench_io.py [--traces DIR] [--runs 5] [--out benchmarks/results/io.md]``

Each figure is the median over ``--runs`` runs in one process. Peak memory is the process's peak
resident set (``resource.getrusage``) and the Python heap peak while reading (``tracemalloc``, in a
separate run since tracing slows the reader down).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optalloc
from optalloc.core import usable_cpus
from optalloc.io import gavel, openb, read_problem, synthetic, write_problem

REPO = Path(__file__).resolve().parents[1]


def _median_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_traces = os.environ.get("OPTALLOC_TRACES", str(REPO.parent / "shared" / "data" / "traces"))
    parser.add_argument("--traces", default=default_traces, help="folder of the public traces")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "io.md"))
    args = parser.parse_args(argv)
    traces = Path(args.traces)
    nodes_csv = traces / "alibaba-gpu-v2023" / "openb_node_list_all_node.csv"
    pods_csv = traces / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    if not pods_csv.exists():
        print(f"traces not found under {traces} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    runs = args.runs
    rows: list[tuple[str, float, str]] = []

    def read() -> optalloc.Problem:
        return openb.read_openb(nodes_csv, pods_csv)

    t, problem = _median_time(read, runs)
    rows.append(
        (
            "(a) read openb default pods + node list -> Problem",
            t,
            f"{len(problem.jobs)} jobs, {len(problem.nodes)} nodes",
        )
    )

    fresh = [read() for _ in range(runs)]
    views = iter(fresh)

    def build_views() -> tuple[Any, Any]:
        p = next(views)
        return p.capacity, p.demand

    t, (capacity, demand) = _median_time(build_views, runs)
    rows.append(("(b) numpy views problem.capacity + problem.demand", t, f"{capacity.shape} + {demand.shape}"))

    # (e) verify an allocation of every pod: best-fit's answer on the GPU nodes, and a hand-made
    # "everything placed" one on the whole node list (placed or listed, every pod is checked).
    gpu_problem = problem.replace(nodes=tuple(n for n in problem.nodes if n.gpus))
    answer = optalloc.solve(gpu_problem, "best-fit", order="largest-demand-first", verify=False)
    t, violations = _median_time(lambda: optalloc.verify(gpu_problem, answer), runs)
    rows.append(
        (
            "(e) verify an allocation of all 8152 pods",
            t,
            f"{len(answer.placements)} placed, {len(answer.unplaced)} listed, {len(violations)} violations",
        )
    )
    t, _ = _median_time(lambda: answer.summary(gpu_problem), runs)
    rows.append(("(e') its summary (ratios, FGD fragmentation)", t, ""))

    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".json", ".yaml"):
            path = Path(tmp) / f"problem{suffix}"
            t_write, _ = _median_time(lambda path=path: write_problem(problem, path), runs)
            t_read, back = _median_time(lambda path=path: read_problem(path), runs)
            assert back.jobs == problem.jobs and back.nodes == problem.nodes
            size = path.stat().st_size / 1e6
            label = "(c)" if suffix == ".json" else "(c')"
            rows.append((f"{label} write problem {suffix[1:].upper()}", t_write, f"{size:.2f} MB"))
            rows.append((f"{label} read problem {suffix[1:].upper()} back", t_read, "identical"))

    throughputs = traces / "gavel" / "simulation_throughputs.json"
    msr = traces / "gavel" / "msr" / "seed=0" / "0e4a51.trace"
    if msr.exists():
        t, jobs = _median_time(lambda: gavel.read_trace(msr, throughputs=throughputs), runs)
        rows.append(("read Gavel 0e4a51 trace + throughputs", t, f"{len(jobs)} jobs"))
    t, _ = _median_time(synthetic.demo_problem, runs)
    rows.append(("synthetic.demo_problem()", t, "64 nodes"))
    t, big = _median_time(lambda: synthetic.openb_like(nodes=1213, jobs=20_000, seed=0), runs)
    rows.append(("synthetic.openb_like(nodes=1213, jobs=20000)", t, f"{len(big.jobs)} jobs"))
    t, inflated = _median_time(
        lambda: synthetic.inflate(problem.jobs, capacity_gpu_milli=6_212_000, target=1.3, seed=42), runs
    )
    rows.append(("synthetic.inflate(default pods, 130% of 6212 GPUs)", t, f"{len(inflated)} jobs"))

    tracemalloc.start()
    read()
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    command = "python benchmarks/bench_io.py" + (f" --runs {runs}" if runs != 5 else "")
    lines = [
        "# optalloc.io benchmark",
        "",
        f"Command: `{command}` (traces from `{os.path.relpath(traces, REPO)}`). Median of {runs} runs in one process; "
        f"Python {platform.python_version()}, {platform.machine()}, {usable_cpus()} cores (shared, noisy).",
        "",
        "| step | median time | notes |",
        "|---|---:|---|",
    ]
    lines += [f"| {name} | {seconds * 1000:.1f} ms | {note} |" for name, seconds, note in rows]
    lines += [
        f"| (d) peak Python heap while reading (a) (tracemalloc) | {heap_peak / 2**20:.1f} MiB | |",
        f"| (d) peak resident set of the whole benchmark process | {rss_kib / 1024:.1f} MiB | includes numpy, yaml, the interpreter |",
        "",
        "Target (issue 2): reading (a) and verifying (e) each well under a second; peak memory (d) modest.",
        "",
    ]
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
