"""``optalloc simulate``: replay a trace through several policies and write a comparison.

The command function :func:`simulate` is registered on the main app by ``optalloc.cli``; everything it
computes comes from :mod:`optalloc.sim`. Typer and rich are imported here only.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optalloc.cli._files import check_output_folder, publish, staging
from optalloc.cli._run import Interrupted, run_interruptibly
from optalloc.core import LIMITS, ProblemError, usable_cpus
from optalloc.sim import (
    EXACT,
    GROUPS,
    PLOTS,
    PROFILES,
    TIMESHARE,
    FailureModel,
    Run,
    Scenario,
    SimConfig,
    SimResult,
    gavel_scenario,
    openb_scenario,
    parse_counts,
    policies,
    start_ray,
    sweep,
    write_report,
)
from optalloc.sim import Progress as SimProgress

log = logging.getLogger(__name__)

DEFAULT_POLICIES = ("fcfs+best-fit", "sjf+best-fit", "fcfs+fgd", "rolling-horizon")


def simulate(
    trace: Annotated[
        Path,
        typer.Option(
            "--trace",
            "-t",
            help="Gavel trace (.trace), openb pod list (.csv) or problem file (.json/.yaml, jobs with durations).",
        ),
    ],
    cluster: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster",
            "-c",
            help="Gavel: GPUs per type, e.g. v100=32,p100=32,k80=32 (repeatable). "
            "openb: a node count in the openb shape mix (24), or 'all' for the trace's GPU nodes.",
        ),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy",
            "-p",
            # \b keeps click from re-wrapping the names (it would split them at their hyphens)
            help="Policy to compare (repeat), one of:\n\n\b\n<order>+<rule> (fcfs+best-fit, sjf+fgd, ...)\n"
            + "\n".join(EXACT)
            + "\n<exact policy>+<rule>\n"
            + "\n".join(TIMESHARE)
            + f"\na group: {', '.join(GROUPS)}"
            + "\ndqn:MODEL.zip, ppo:MODEL.zip (trained with optalloc rl train)",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for results, plots and report.")] = Path(
        "sim-out"
    ),
    throughputs: Annotated[
        Path | None, typer.Option(help="Gavel simulation_throughputs.json (default: found next to the trace).")
    ] = None,
    estimate: Annotated[
        str, typer.Option(help="Gavel: GPU type whose runtime the controller is told (or min, max, none).")
    ] = "v100",
    compress: Annotated[
        float, typer.Option(help="openb: divide inter-arrival times by this factor (adds load).", min=0.001)
    ] = 1.0,
    qos_priority: Annotated[bool, typer.Option(help="openb: qos as priority (LS 2, Guaranteed/Burstable 1).")] = False,
    jobs: Annotated[int | None, typer.Option(help="Replay only N jobs (the first, after --skip).", min=1)] = None,
    skip: Annotated[int, typer.Option(help="Leave out the first K jobs by arrival (a slice of the trace).", min=0)] = 0,
    tick: Annotated[float, typer.Option(help="Seconds between controller ticks (observations).", min=0)] = 60.0,
    react: Annotated[
        bool, typer.Option("--react/--ticks-only", help="Step at every arrival and completion, or only at ticks.")
    ] = True,
    restart_penalty: Annotated[
        float, typer.Option(help="Seconds without progress after a preempted or migrated job restarts.", min=0)
    ] = 30.0,
    keep_progress: Annotated[
        bool, typer.Option("--keep-progress/--lose-progress", help="A restarted job keeps its work (checkpoint).")
    ] = True,
    usage: Annotated[str, typer.Option(help=f"Usage profile: {', '.join(PROFILES)}.")] = "typical",
    seed: Annotated[int, typer.Option(help="Seed of the usage draws, failures and engines.")] = 0,
    budget: Annotated[
        float,
        typer.Option(help="Seconds per re-solve of the exact policies (per stage of a time-share program).", min=0.01),
    ] = 1.0,
    round_length: Annotated[
        float, typer.Option("--round", help="Time-share policies: seconds per round (re-solved every round).", min=1)
    ] = 360.0,
    parts: Annotated[
        int, typer.Option(help="Time-share policies: solve each program in this many parts (POP), in parallel.", min=1)
    ] = 1,
    mtbf: Annotated[
        float | None, typer.Option(help="Node failures: mean seconds between failures of one node.", min=1)
    ] = None,
    repair: Annotated[float, typer.Option(help="Seconds a failed node stays down.", min=0)] = 3600.0,
    until: Annotated[float | None, typer.Option(help="Stop at this simulated time (seconds).")] = None,
    until_last_arrival: Annotated[
        bool, typer.Option("--until-last-arrival", help="Stop at the last arrival (measure the loaded period).")
    ] = False,
    verify: Annotated[bool, typer.Option(help="Verify every committed allocation (slow).")] = False,
    engine: Annotated[
        str,
        typer.Option(help="controller (every decision by the production step) or direct (heuristic policies, fast)."),
    ] = "controller",
    plots: Annotated[bool, typer.Option(help="Write the PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files in --out that an earlier optalloc simulate did not write.")
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            help="Policies simulated side by side in a local process pool (1: one after another; "
            "0: one process per CPU this process may use).",
            min=0,
        ),
    ] = 1,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray", help="Run each policy as a Ray task (a local Ray runtime, or --ray-address; extra 'ray')."
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Address of a running Ray cluster (host:port, or 'auto'); implies --ray. With --ray alone, "
            "OPTALLOC_RAY_ADDRESS is read, else a local runtime is started."
        ),
    ] = None,
) -> None:
    """Replay a trace through the controller under several policies; write JSON, CSV, plots and a report.

    Progress is shown on any output (a bar on a terminal, a line every 10 s otherwise). Ctrl-C stops
    the run: the policies that finished are written (exit status 130). --processes and --ray run the
    policies side by side and give the same report (heuristic policies decide exactly the same; the
    exact ones decide within wall-clock budgets, so their answers may differ wherever CPU time does).
    """
    executor, workers, address = _executor(processes, ray, ray_address)
    console = Console(stderr=True, soft_wrap=True)  # a log line is never cut at 80 columns
    stale = check_output_folder(
        out, OUTPUT_NAMES, inputs=(trace, throughputs, *_sidecars(trace)), force=force, option="--out"
    )
    scenario = load_scenario(
        trace,
        cluster,
        throughputs=throughputs,
        estimate=estimate,
        compress=compress,
        qos_priority=qos_priority,
    )
    if jobs is not None or skip:
        scenario = scenario.select(skip, jobs)
    if not scenario.jobs:
        sliced = " after --skip/--jobs" if jobs is not None or skip else ""
        raise ProblemError("--trace", str(trace), f"has no jobs to replay{sliced}")
    if not scenario.nodes:
        raise ProblemError("--cluster" if cluster else "--trace", (cluster or [str(trace)])[0], "gives no nodes")
    stop = until
    if until_last_arrival and scenario.jobs:
        stop = float(scenario.problem.job_arrival.max())
    _check_ticks(scenario, tick, stop)
    config = SimConfig(
        tick=tick,
        react=react,
        restart_penalty=restart_penalty,
        keep_progress=keep_progress,
        usage=usage,
        seed=seed,
        failures=FailureModel(mtbf, repair, seed) if mtbf is not None else None,
        until=stop,
        verify=verify,
        engine=engine,
    )
    chosen = resolve_policies(
        policy or list(DEFAULT_POLICIES),
        budget=budget,
        seed=seed,
        durations=[j.duration for j in scenario.jobs if j.duration is not None],
        round_length=round_length,
        parts=parts,
    )
    if not quiet:
        d = scenario.describe()
        console.print(f"{d['description']}: {d['nodes']} nodes, {d['gpus']} GPUs, {d['jobs']} jobs", markup=False)
    if executor == "ray":
        # Here, in the main thread: the sweep runs in a worker thread (Ctrl-C is heard at once), and Ray's
        # local processes would end with the thread that started them.
        where = start_ray(address)
        if not quiet:
            console.print(f"running the policies as tasks on {where}", markup=False, highlight=False)
    halt = threading.Event()
    runs = [Run(scenario, p, config) for p in chosen]

    def replay(report: Callable[[SimProgress], None] | None) -> list[SimResult | None]:
        return sweep(runs, executor=executor, processes=workers, ray_address=address, progress=report, stop=halt)

    def halted() -> None:
        if not quiet:
            console.print(
                "interrupted: stopping the simulation; the policies that finished will be written",
                markup=False,
                highlight=False,
            )

    if quiet:
        outcome = run_interruptibly(lambda: replay(None), on_interrupt=halt.set, waiting=halted)
    elif console.is_terminal:
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("jobs, {task.fields[events]} events"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            tasks = {p.name: bar.add_task(p.name, total=len(scenario.jobs), events=0) for p in chosen}

            def update(p: SimProgress) -> None:
                bar.update(tasks[p.policy], completed=p.done, events=p.events)

            outcome = run_interruptibly(lambda: replay(update), on_interrupt=halt.set, waiting=halted)
    else:
        lines = _ProgressLines(console, len(chosen))
        outcome = run_interruptibly(lambda: replay(lines.update), on_interrupt=halt.set, waiting=halted)
    finished = outcome.value
    results = [r for r in finished if r is not None]
    interrupted = outcome.interrupted or len(results) < len(chosen)
    if interrupted and not results:
        raise Interrupted("interrupted: no policy finished, nothing written")
    command = "optalloc " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    unfinished = ", ".join(p.name for p, r in zip(chosen, finished, strict=True) if r is None)
    note = (
        f"Interrupted (Ctrl-C) after {len(results)} of {len(chosen)} policies: {unfinished} did not finish "
        "and are not reported."
        if interrupted
        else ""
    )
    with staging(out) as stage:
        files = write_report(stage, scenario, results, config, command=command, plots=plots)
        if note:
            report = stage / "report.md"
            report.write_text(report.read_text(encoding="utf-8") + f"\n{note}\n", encoding="utf-8")
        files = publish(files, out, stale=stale)
    if not quiet:
        console.print(_summary(results))
        console.print(f"wrote {len(files)} files to {out}: " + ", ".join(f.name for f in files), markup=False)
    if interrupted:
        raise Interrupted(
            f"interrupted after {len(results)} of {len(chosen)} policies; wrote the finished ones to {out} "
            f"({unfinished} did not finish)"
        )


#: Every file ``simulate`` may write into ``--out`` (sim.write_report: results, tables, plots, report).
OUTPUT_NAMES = ("results.json", "metrics.csv", "jobs.csv", "timeline.csv", *PLOTS, "report.md")


def _executor(processes: int, ray: bool, ray_address: str | None) -> tuple[str, int | None, str | None]:
    """Where the policies run: (executor, local processes, Ray address), from the options. The Ray
    address comes from --ray-address, else (with --ray) from OPTALLOC_RAY_ADDRESS, read here, when the
    command runs."""
    if ray_address is not None and not ray_address.strip():
        raise ProblemError("--ray-address", ray_address, "is empty (host:port of a Ray cluster, or 'auto')")
    if ray or ray_address is not None:
        if processes != 1:
            raise ProblemError(
                "--processes", processes, "is for the local pool: with --ray the cluster's CPUs run the policies"
            )
        try:
            import ray as _ray  # noqa: F401 - only whether it is installed
        except ImportError:
            raise ProblemError("--ray", True, 'needs Ray: pip install "optalloc[ray]"') from None
        return "ray", None, ray_address or os.environ.get("OPTALLOC_RAY_ADDRESS") or None
    if processes == 1:
        return "serial", None, None
    return "local", processes or usable_cpus(), None


class _ProgressLines:
    """Progress as plain lines on an output that is not a terminal (a log, a CI job): a line every
    ``every`` seconds, and one when a policy finishes."""

    def __init__(self, console: Console, policies: int, every: float = 10.0) -> None:
        self.console, self.policies, self.every = console, policies, every
        self.started = time.monotonic()
        self.last = self.started
        self.current: str | None = None
        self.index = 0

    def update(self, p: SimProgress) -> None:
        now = time.monotonic()
        if p.policy != self.current:
            self.current, self.index, self.policy_started = p.policy, self.index + 1, now
        finished = p.done >= p.total
        if finished or now - self.last >= self.every:
            self.last = now
            state = "done" if finished else "running"
            self.console.print(
                f"[{_clock(now - self.started)}] policy {self.index}/{self.policies} {p.policy} {state}: "
                f"{p.done}/{p.total} jobs, {p.events} events, simulated {p.time / 3600:.1f} h",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


#: Controller ticks one job's run may take, at most: the simulator ticks every --tick seconds while a
#: job runs, so a job of 30 years at the default 60 s would be 16 million steps (hours of work).
MAX_TICKS = 1_000_000


def _check_ticks(scenario: Scenario, tick: float, until: float | None) -> None:
    if not tick:
        return
    runtime = scenario.runtime[np.isfinite(scenario.runtime)]
    longest = float(runtime.max()) if runtime.size else 0.0
    if until is not None:
        longest = min(longest, max(0.0, until - float(scenario.problem.job_arrival.min())))
    if longest / tick > MAX_TICKS:
        raise ProblemError(
            "--tick",
            tick,
            f"seconds would make {longest / tick:,.0f} controller ticks while the longest job runs ({longest:g} s), "
            f"more than {MAX_TICKS:,}: pass a larger --tick or an earlier --until",
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _sidecars(trace: Path) -> tuple[Path, ...]:
    """Files next to the trace that a replay reads too (the openb node list, Gavel's throughputs)."""
    return (trace.parent / "openb_node_list_all_node.csv", trace.parent / "simulation_throughputs.json")


def resolve_policies(names: list[str], *, budget: float, seed: int, durations: list[float], **options: object) -> list:
    """The policies called ``names``, in order: simulator policies (groups expanded; ``options`` such as
    the time-share ``round_length`` and ``parts`` go to them) and trained ones (``dqn:MODEL.zip``,
    ``ppo:MODEL.zip``, built by :func:`optalloc.rl.policy`)."""
    out: dict[str, object] = {}
    for name in names:
        if name.partition(":")[0] in ("dqn", "ppo") and ":" in name:
            if name not in out:
                out[name] = _learned(name, seed=seed)  # the exact arm keeps the budget it was trained with
            continue
        for p in policies([name], budget=budget, seed=seed, durations=durations, **options):
            out.setdefault(p.name, p)
    return list(out.values())


def _learned(name: str, *, seed: int) -> object:
    try:
        from optalloc import rl
    except ImportError as exc:  # the rl extra is optional
        raise ProblemError("--policy", name, f"needs the rl extra (pip install 'optalloc[rl]'): {exc}") from None
    return rl.policy(name, seed=seed)


def load_scenario(
    trace: Path,
    cluster: list[str] | None,
    *,
    throughputs: Path | None = None,
    estimate: str = "v100",
    compress: float = 1.0,
    qos_priority: bool = False,
) -> Scenario:
    """The scenario of ``--trace`` and ``--cluster`` (see the option help)."""
    if not trace.exists():
        raise FileNotFoundError(2, "No such file", str(trace))
    suffix = trace.suffix.lower()
    if suffix == ".trace":
        tp = throughputs or _find_throughputs(trace)
        try:
            counts = parse_counts(cluster) if cluster else {"v100": 32, "p100": 32, "k80": 32}
            return gavel_scenario(trace, tp, counts, estimate=estimate)
        except ProblemError as err:
            raise _as_cluster_option(err) from None
    if suffix == ".csv":
        nodes = _openb_nodes(trace, cluster)
        return openb_scenario(trace, nodes=nodes, compress=compress, qos_priority=qos_priority)
    if suffix in (".json", ".yaml", ".yml"):
        from optalloc.io import read_problem

        if cluster:
            raise ProblemError("--cluster", cluster[0], "is not used with a problem file (its nodes are the cluster)")
        problem = read_problem(trace)
        return Scenario.from_problem(problem, trace.stem, description=f"{trace.name}: jobs run their duration")
    raise ProblemError("--trace", str(trace), "is not a .trace (Gavel), .csv (openb) or problem file (.json, .yaml)")


def _as_cluster_option(err: ProblemError) -> ProblemError:
    """An error about the cluster's GPU counts, named by the option that gave them (``--cluster``)."""
    if err.field in ("cluster", "counts"):
        return ProblemError("--cluster", err.value, err.reason)
    if err.field.startswith("counts."):
        return ProblemError("--cluster", f"{err.field.partition('.')[2]}={err.value}", err.reason)
    return err


def _find_throughputs(trace: Path) -> Path:
    for folder in [trace.parent, *trace.parents][:4]:
        candidate = folder / "simulation_throughputs.json"
        if candidate.exists():
            return candidate
    raise ProblemError("--throughputs", None, f"is needed: no simulation_throughputs.json above {trace}")


def _openb_nodes(trace: Path, cluster: list[str] | None) -> int | list:
    if cluster and len(cluster) > 1:
        raise ProblemError("--cluster", cluster[1], "is a second cluster: an openb replay takes one node count")
    spec = (cluster or ["24"])[0].strip()
    if spec.startswith("openb="):
        spec = spec.partition("=")[2]
    if spec.isdigit() and spec.isascii():
        if len(spec) > 7 or int(spec) > LIMITS.nodes:
            raise ProblemError("--cluster", spec, f"is more than {LIMITS.nodes:,} nodes, the limit (docs/limits.md)")
        if int(spec) == 0:
            raise ProblemError("--cluster", spec, "gives no nodes")
        return int(spec)
    if spec == "all":
        from optalloc.io import openb

        node_list = trace.parent / "openb_node_list_all_node.csv"
        if not node_list.exists():
            raise ProblemError("--cluster", spec, f"needs {node_list.name} next to the pod list")
        return openb.read_nodes(node_list, gpu_only=True)
    raise ProblemError("--cluster", spec, "is not a node count (24) or 'all' for an openb pod list")


def _summary(results: list) -> Table:
    caption = (
        "JCT, p99: mean and p99 job completion time; wait: mean queueing delay (hours); alloc, util: GPU "
        "allocation and observed utilisation; done: completion rate; ev/s: simulated events per second"
    )
    table = Table(title="Policies compared", caption=caption, box=None, pad_edge=False, header_style="bold underline")
    # From 80 columns up a figure is never cut: long policy names fold onto two lines instead.
    table.add_column("policy", overflow="fold", min_width=12)
    for col in ("JCT h", "p99 h", "wait h", "alloc %", "util %", "done %", "ev/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in results:
        m = r.metrics
        table.add_row(
            r.policy,
            _h(m.avg_jct),
            _h(m.p99_jct),
            _h(m.avg_queueing_delay),
            f"{100 * m.gpu_allocation:.1f}",
            f"{100 * m.gpu_utilisation:.1f}",
            f"{100 * m.completion_rate:.1f}",
            f"{m.events_per_second:,.0f}",
        )
    return table


def _h(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds / 3600:.2f}"


__all__ = ["load_scenario", "resolve_policies", "simulate"]
