"""``optalloc watch``: run the adaptive loop against a real Prometheus and print the plan changes.

Dry run only: optalloc has no cluster actuator (it does not talk to Kubernetes, Slurm or Ray); it prints
what should start, be preempted, migrate or be resized, and why, for a scheduler or a person to carry out.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optalloc.adaptive.controller import ControllerConfig, ControllerState, events_between, step
from optalloc.adaptive.drift import DriftConfig
from optalloc.adaptive.monitor import LabelMap, PrometheusSource, Queries, safe_observe
from optalloc.adaptive.plan import Plan
from optalloc.adaptive.rightsize import RightSizing
from optalloc.cli._run import run_interruptibly
from optalloc.core import OptallocError, ProblemError
from optalloc.models.horizon import HorizonConfig

log = logging.getLogger(__name__)


def watch(
    problem: Annotated[
        Path, typer.Argument(help="Problem file (JSON or YAML): the nodes, the jobs, and what runs now.", exists=True)
    ],
    prometheus: Annotated[
        str, typer.Option("--prometheus", "-p", help="Base URL of the Prometheus server.")
    ] = "http://127.0.0.1:9090",
    once: Annotated[bool, typer.Option("--once", help="Take one step, print it, and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between two steps.", min=0.1)] = 15.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run/--apply", help="Only print the plans. --apply is refused: optalloc has no cluster actuator."
        ),
    ] = True,
    method: Annotated[str, typer.Option(help="Engine of a re-solve (see `optalloc.solve.methods()`).")] = "auto",
    fallback: Annotated[str, typer.Option(help="Heuristic used when the method has no answer in time.")] = "best-fit",
    budget: Annotated[float, typer.Option(help="Seconds one re-solve may take.", min=0.01)] = 5.0,
    max_migrations: Annotated[int, typer.Option(help="Running jobs moved or preempted per step, at most.", min=0)] = 2,
    horizon: Annotated[
        float | None, typer.Option(help="Seconds looked ahead by the horizon model (off when not given).", min=1)
    ] = None,
    right_size: Annotated[
        bool, typer.Option("--right-size", help="Shrink mostly idle whole-GPU jobs to a GPU share (opt-in).")
    ] = False,
    drift_high: Annotated[float, typer.Option(help="Cluster drift that triggers a re-solve.", min=0)] = 0.25,
    drift_low: Annotated[float, typer.Option(help="Drift below which the trigger re-arms.", min=0)] = 0.10,
    tau: Annotated[float, typer.Option(help="Drift smoothing time constant, seconds.", min=0.001)] = 60.0,
    min_interval: Annotated[float, typer.Option(help="Seconds between two re-solves, at least.", min=0)] = 60.0,
    gpu_only: Annotated[
        bool, typer.Option("--gpu-only", help="Query only the DCGM GPU metrics (no node_exporter, no cAdvisor).")
    ] = False,
    node_label: Annotated[
        list[str] | None, typer.Option(help="Prometheus label naming the node (repeat; first present wins).")
    ] = None,
    job_label: Annotated[
        list[str] | None, typer.Option(help="Prometheus label naming the pod/job (repeat; first present wins).")
    ] = None,
    job_pattern: Annotated[
        str | None, typer.Option(help="Regex with a (?P<job>...) group turning a pod name into a job name.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per Prometheus request.", min=0.01)] = 5.0,
    steps: Annotated[int | None, typer.Option(help="Stop after this many steps.", min=1)] = None,
    exporter_port: Annotated[
        int | None, typer.Option(help="Serve the controller's own metrics on this port (/metrics).", min=0, max=65535)
    ] = None,
    exporter_host: Annotated[str, typer.Option(help="Address the metrics endpoint binds.")] = "127.0.0.1",
    as_json: Annotated[bool, typer.Option("--json", help="Print each plan as one JSON line.")] = False,
    show: Annotated[
        int, typer.Option(help="Actions listed per plan (the rest are counted; --json has all).", min=1)
    ] = 30,
) -> None:
    """Watch a cluster through Prometheus and print how the allocation should change (dry run).

    Each step reads GPU usage from the DCGM exporter (and CPU/memory from node_exporter and cAdvisor),
    compares it with what the allocation requests, and re-solves when it drifts, when jobs arrive or
    complete (edit the problem file: it is re-read when it changes), or when nodes come or go.
    """
    console = Console()
    errors = Console(stderr=True)
    if not dry_run:
        raise ProblemError("--apply", True, "is not available: optalloc has no cluster actuator; it only prints plans")
    from optalloc.io import read_problem
    from optalloc.solve import get_method

    # Bad input is one line and exit status 2 (optalloc.cli.main prints it), before any request is sent.
    current = read_problem(problem)
    for name in dict.fromkeys((method, fallback)):
        get_method(name)
    labels = LabelMap(
        node_labels=tuple(node_label) if node_label else LabelMap().node_labels,
        job_labels=tuple(job_label) if job_label else LabelMap().job_labels,
        job_pattern=job_pattern,
    )
    try:
        source = PrometheusSource(
            prometheus, queries=Queries.dcgm_only() if gpu_only else Queries(), labels=labels, timeout=timeout
        )
    except ProblemError as err:
        raise ProblemError("--prometheus", prometheus, err.reason) from None
    config = ControllerConfig.of(
        method=method,
        fallback=fallback,
        budget=budget,
        max_migrations=max_migrations,
        drift=DriftConfig(high=drift_high, low=drift_low, tau=tau, min_interval=min_interval),
        horizon=HorizonConfig(horizon=horizon, time_limit=max(0.01, budget / 2)) if horizon else None,
        right_size=RightSizing() if right_size else None,
    )

    exporter = None
    if exporter_port is not None:
        from optalloc.adaptive.exporter import start_exporter

        try:
            exporter = start_exporter(exporter_port, host=exporter_host)
        except OSError as err:  # the port is taken, or the address is not one of this machine's
            raise ProblemError(
                "--exporter-port", exporter_port, f"cannot be served on {exporter_host}: {err.strerror or err}"
            ) from None
        errors.print(f"controller metrics at {exporter.url}")
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        # This command reports stale monitoring data itself, once per episode: without -v, the library's
        # own warnings about it would only repeat that line.
        for name in ("optalloc.adaptive.monitor", "optalloc.adaptive.controller"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from optalloc.solve import preload

    preload(config.method)  # imports before the first step, not within its budget
    preload(config.fallback)
    state = ControllerState.initial(current, config, now=time.time())
    mtime = _mtime(problem)
    taken = 0
    errors.print(f"watching {prometheus} for {len(current.nodes)} nodes and {len(current.jobs)} jobs (dry run)")
    try:
        while True:
            started = time.monotonic()
            events = []
            if _mtime(problem) != mtime:
                mtime = _mtime(problem)
                try:
                    updated = read_problem(problem)
                    events = events_between(current, updated)
                    current = updated
                except (OptallocError, OSError) as err:
                    errors.print(f"ignoring the edited problem file: {err}", markup=False, highlight=False)
            now = time.time()
            was_stale = state.stale

            def one_step(state: ControllerState = state, now: float = now, events: list = events) -> tuple:
                return step(state, now, safe_observe(source, now), events)

            # The step (a solve of up to --budget seconds) runs in a worker thread: Ctrl-C is heard at once,
            # and the loop ends once the step in progress has returned.
            outcome = run_interruptibly(
                one_step,
                on_interrupt=lambda: None,
                waiting=lambda: errors.print(
                    f"stopping after the step in progress (at most {budget:g} s; Ctrl-C again to leave now)",
                    markup=False,
                    highlight=False,
                ),
            )
            if outcome.interrupted:
                raise KeyboardInterrupt
            state, plan = outcome.value
            if exporter is not None:
                exporter.metrics.record(state, plan)
            taken += 1
            if as_json:
                console.print_json(json.dumps(plan.to_dict()))
            else:
                _show(console, errors, state, plan, was_stale=was_stale, always=once, limit=show, first=taken == 1)
            if once or (steps is not None and taken >= steps):
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        errors.print("stopped")
    finally:
        if exporter is not None:
            exporter.close()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _show(
    console: Console,
    errors: Console,
    state: ControllerState,
    plan: Plan,
    *,
    was_stale: bool,
    always: bool,
    limit: int = 30,
    first: bool = False,
) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(plan.time))
    if plan.stale and (always or not was_stale):
        # On the first step there is no earlier plan to keep.
        kept = "no usage observed yet" if first else "keeping the last plan"
        errors.print(f"{stamp} monitoring data stale, {kept}: {state.error}", markup=False, highlight=False)
    elif was_stale and not plan.stale:
        errors.print(f"{stamp} monitoring data fresh again")
    drift = state.drift.cluster
    shown_drift = "n/a" if drift != drift else f"{drift:.3f}"  # NaN: nothing observed yet
    if not plan.actions:
        if always:
            why = f"re-solved ({plan.trigger})" if plan.trigger is not None else "no trigger"
            console.print(
                f"{stamp} no change: {why}; drift {shown_drift}, {len(state.running)} running, {len(state.queue)} waiting"
            )
        return
    title = f"{stamp} {plan.trigger or 'events'}"
    if plan.method:
        fell_back = f" (fallback: {plan.fallback})" if plan.fallback is not None else ""
        title += f" — {plan.method}{fell_back} in {plan.solve_time:.2f}s"
    table = Table(title=title, title_justify="left")
    for column in ("action", "job", "nodes", "reason"):
        table.add_column(column)
    for action in plan.actions[:limit]:
        nodes = ", ".join(action.nodes) or "-"
        if action.previous and action.kind.value in ("migrate", "preempt"):
            nodes = f"{', '.join(action.previous_nodes)} -> {nodes}"
        table.add_row(action.kind.value, action.job, nodes, action.reason)
    console.print(table)
    if len(plan.actions) > limit:
        counts: dict[str, int] = {}
        for action in plan.actions[limit:]:
            counts[action.kind.value] = counts.get(action.kind.value, 0) + 1
        more = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        console.print(f"... and {len(plan.actions) - limit} more actions ({more}); --show N or --json lists them")
    console.print(
        f"drift {shown_drift}, {len(state.running)} running, {len(state.queue)} waiting (dry run: nothing applied)"
    )
