"""The ``optalloc`` command line: import traces, plan allocations, verify them, compare methods.

Bad input prints one line (``error: jobs[3].gpus: -1 is negative``) and exits with status 2;
``verify`` exits 1 when the allocation breaks a rule.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from optalloc import OptallocError, ProblemError, Status, __version__
from optalloc.cli import render, whatif

app = typer.Typer(
    name="optalloc",
    help="Decide where deep-learning jobs run: GPUs (whole or shared), CPU and memory, exactly or fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at any width (rich's tables cut option names at 80 columns)
)
import_app = typer.Typer(
    help="Turn traces and CSV exports into an optalloc problem file.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(import_app, name="import")

out_console = Console()
err_console = Console(stderr=True)


@app.callback()
def _global(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")
    ] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# import ------------------------------------------------------------------------------------------
@import_app.command("openb", short_help="Import an Alibaba openb node list and pod list.")
def import_openb(
    nodes: Annotated[Path, typer.Option("--nodes", help="openb node list CSV (sn,cpu_milli,memory_mib,gpu,model).")],
    pods: Annotated[Path, typer.Option("--pods", help="openb pod list CSV.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Problem file to write (.json, .yaml).")],
    gpu_nodes_only: Annotated[
        bool, typer.Option("--gpu-nodes-only", help="Keep only nodes with GPUs (as the FGD simulator does).")
    ] = False,
) -> None:
    """Import an Alibaba openb node list and pod list (the FGD paper's traces)."""
    from optalloc.io import openb, write_problem

    problem = openb.read_openb(nodes, pods, gpu_nodes_only=gpu_nodes_only)
    write_problem(problem, out)
    _wrote(out, problem)


@import_app.command("gavel")
def import_gavel(
    trace: Annotated[Path, typer.Argument(help="Gavel job trace (7- or 10-field, tab-separated).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Problem file to write.")],
    throughputs: Annotated[Path | None, typer.Option(help="simulation_throughputs.json, for durations.")] = None,
    worker_type: Annotated[str, typer.Option(help="GPU type whose throughput gives the durations.")] = "v100",
    cluster: Annotated[list[str] | None, typer.Option(help="GPUs per type, e.g. v100=500 (repeatable).")] = None,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per synthetic server.")] = 8,
    gang: Annotated[
        bool, typer.Option(help="Model a k-GPU job as k one-GPU replicas (a gang) instead of one replica.")
    ] = False,
) -> None:
    """Import a Gavel (Philly-derived) job trace onto synthetic servers."""
    from optalloc.io import gavel, write_problem

    counts = _counts(cluster or ["v100=500"])
    problem = gavel.gavel_problem(
        trace, counts=counts, gpus_per_node=gpus_per_node, throughputs=throughputs, worker_type=worker_type, gang=gang
    )
    write_problem(problem, out)
    _wrote(out, problem)


@import_app.command("csv", short_help="Import generic CSV exports (Kubernetes units).")
def import_csv(
    nodes: Annotated[Path, typer.Option("--nodes", help="Nodes CSV: columns are Node fields (units allowed).")],
    jobs: Annotated[Path, typer.Option("--jobs", help="Jobs CSV: columns are Job fields (units allowed).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Problem file to write.")],
) -> None:
    """Import generic CSV exports (Kubernetes-style units such as 500m and 16Gi are understood)."""
    from optalloc import Problem
    from optalloc.io import read_jobs_csv, read_nodes_csv, write_problem

    problem = Problem(tuple(read_nodes_csv(nodes)), tuple(read_jobs_csv(jobs)))
    write_problem(problem, out)
    _wrote(out, problem)


# plan / verify -----------------------------------------------------------------------------------
@app.command(short_help="Allocate a problem and print a summary.")
def plan(
    problem_path: Annotated[Path, typer.Argument(metavar="PROBLEM", help="Problem file (JSON or YAML).")],
    method: Annotated[str, typer.Option("--method", "-m", help="Engine (see `optalloc methods`).")] = "auto",
    order: Annotated[str, typer.Option(help="Queue ordering of the heuristics.")] = "fcfs",
    time_limit: Annotated[float, typer.Option(help="Seconds for the exact engines.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    workers: Annotated[int | None, typer.Option(help="CP-SAT workers (default: all cores).")] = None,
    gap: Annotated[float, typer.Option(help="Stop at this relative gap (0.01 = 1%).")] = 0.0,
    previous: Annotated[
        Path | None, typer.Option(help="Allocation already decided (kept; new jobs placed around it).")
    ] = None,
    allow_migration: Annotated[bool, typer.Option(help="Let the engines move running preemptible jobs.")] = False,
    warm_start: Annotated[str, typer.Option(help="Heuristic rule that auto hints CP-SAT with.")] = "best-fit",
    fragmentation_guide: Annotated[
        float, typer.Option(help="Steer the exact search towards low FGD fragmentation (e.g. 0.05; 0 = off).")
    ] = 0.0,
    admission_forecast: Annotated[
        float,
        typer.Option(
            help="Demand still expected, x the free GPU capacity (e.g. 2): hold back GPU shares that would strand "
            "GPUs the forecast fills better; acts only while the forecast's whole-GPU demand exceeds the free "
            "whole GPUs (0 = off)."
        ),
    ] = 0.0,
    add_like: Annotated[list[str] | None, typer.Option(help="What-if: NODE=COUNT more nodes shaped like NODE.")] = None,
    remove_model: Annotated[list[str] | None, typer.Option(help="What-if: remove the nodes of this GPU model.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Allocation file to write (.json, .yaml).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the allocation file to stdout instead of tables.")
    ] = False,
    show_unplaced: Annotated[int, typer.Option(help="How many unplaced jobs to list.")] = 10,
) -> None:
    """Allocate a problem and print a summary (write the allocation with --out)."""
    from optalloc.io import allocation_to_dict, read_allocation, read_problem, write_allocation
    from optalloc.solve import solve

    problem = read_problem(problem_path)
    for spec in add_like or []:
        problem = whatif.add_like(problem, *whatif.parse_add(spec))
    for model in remove_model or []:
        problem = whatif.remove_model(problem, model)
    prev = read_allocation(previous) if previous is not None else None
    answer = solve(
        problem,
        method,
        previous=prev,
        time_limit=time_limit,
        seed=seed,
        workers=workers,
        relative_gap=gap,
        order=order,
        allow_migration=allow_migration,
        warm_start=warm_start,
        fragmentation_guide=fragmentation_guide,
        admission_forecast=admission_forecast,
    )
    if prev is not None:
        from optalloc.solve import with_previous

        problem = with_previous(problem, prev)
    if out is not None:
        write_allocation(answer, out, problem)
    if as_json:
        sys.stdout.write(json.dumps(allocation_to_dict(answer, problem), indent=1) + "\n")
        return
    out_console.print(render.summary_table(problem, answer, title=f"Allocation of {problem_path.name}"))
    if "admission" in answer.stats:
        out_console.print(f"admission control: {answer.stats['admission']}", markup=False, highlight=False)
    if answer.unplaced and show_unplaced > 0:
        out_console.print(render.unplaced_table(answer, show_unplaced))
    if out is not None:
        out_console.print(f"wrote {out}")


@app.command(short_help="Check an allocation against a problem.")
def verify(
    problem_path: Annotated[Path, typer.Argument(metavar="PROBLEM", help="Problem file.")],
    allocation_path: Annotated[Path, typer.Argument(metavar="ALLOCATION", help="Allocation file to check.")],
) -> None:
    """Check an allocation against a problem: exit 0 when valid, 1 listing every violation."""
    from optalloc import verify as check
    from optalloc.io import read_allocation, read_problem

    problem = read_problem(problem_path)
    violations = check(problem, read_allocation(allocation_path))
    if not violations:
        out_console.print(f"valid: {allocation_path} satisfies every rule of {problem_path}")
        return
    for v in violations:
        out_console.print(f"{v.kind.value}: {v.message}", markup=False)
    out_console.print(f"{len(violations)} violation(s)")
    raise typer.Exit(1)


# capacity planning ----------------------------------------------------------------------------
@app.command(short_help="How many more nodes it takes to place every job.")
def fit(
    problem_path: Annotated[Path, typer.Argument(metavar="PROBLEM", help="Problem file.")],
    like: Annotated[str, typer.Option(help="Add nodes shaped like this node.")],
    method: Annotated[str, typer.Option(help="Engine used for each trial (a fast heuristic by default).")] = "best-fit",
    order: Annotated[str, typer.Option(help="Queue ordering of the heuristics.")] = "largest-demand-first",
    max_nodes: Annotated[int, typer.Option(help="Give up above this many added nodes.")] = 4096,
    time_limit: Annotated[float, typer.Option(help="Seconds per trial for exact engines.")] = 5.0,
) -> None:
    """How many more nodes like --like it takes to place every job that any node could host."""
    from optalloc.io import read_problem
    from optalloc.solve import solve

    problem = read_problem(problem_path)
    whatif.add_like(problem, like, 0, option="--like")  # a bad --like fails before any trial

    def left(count: int) -> int:
        trial = whatif.add_like(problem, like, count) if count else problem
        answer = solve(trial, method, order=order, time_limit=time_limit)
        return sum(1 for u in answer.unplaced if u.reason == "insufficient capacity")

    if left(0) == 0:
        out_console.print("everything already fits: 0 more nodes")
        return
    hi = 1
    while left(hi) and hi < max_nodes:
        hi *= 2
    if left(hi):
        raise ProblemError("--max-nodes", max_nodes, f"more nodes like {like} are not enough to place every job")
    lo = hi // 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if left(mid):
            lo = mid
        else:
            hi = mid
    out_console.print(f"{hi} more node(s) like {like} place every job ({method}, {order}); {hi - 1} leave some out")


# discovery --------------------------------------------------------------------------------------
@app.command()
def methods() -> None:
    """List every registered engine and whether it is available here."""
    from rich.table import Table

    from optalloc.heuristics import ORDERS
    from optalloc.solve import methods as registered

    table = Table(title="Methods", title_justify="left")
    for column in ("name", "kind", "available", "description"):
        table.add_column(column)
    for m in registered():
        table.add_row(m.name, m.kind, "yes" if m.available() else "no", m.description)
    out_console.print(table)
    out_console.print("queue orderings (--order): " + ", ".join(ORDERS))


@app.command(short_help="Run the main methods on the embedded default workload.")
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the embedded synthetic workload.")] = 0,
    time_limit: Annotated[float, typer.Option(help="Seconds for the exact engine.")] = 5.0,
) -> None:
    """Generate the embedded default workload, run the main methods, print them side by side."""
    from optalloc.io import demo_problem
    from optalloc.solve import solve

    problem = demo_problem(seed)
    d = problem.describe()
    out_console.print(
        f"Synthetic cluster modelled on the Alibaba openb mix (seed {seed}): {d['nodes']} nodes, {d['gpus']} GPUs, "
        f"{d['jobs']} jobs asking for {d['gpu_milli_requested'] / 1000:,.1f} GPUs."
    )
    answers = [solve(problem, m, order="fcfs", seed=seed) for m in ("first-fit", "best-fit", "dot-product", "fgd")]
    answers.append(solve(problem, "auto", time_limit=time_limit, seed=seed))
    out_console.print(render.comparison_table(problem, answers))
    out_console.print(render.comparison_table.__doc__ or "")
    best = max(answers, key=lambda a: a.objective or 0)
    out_console.print(
        f"Every answer passed optalloc.verify. Best: {best.method}"
        + (
            ", proven optimal."
            if best.status is Status.OPTIMAL
            else f", within {render.percent(best.gap)} of the proven bound."
            if best.gap is not None
            else "."
        )
    )


def _register_optional() -> None:
    try:
        from optalloc.cli.simulate import simulate
    except ImportError as exc:  # matplotlib (plots) is optional
        logging.getLogger(__name__).debug("simulate unavailable: %s", exc)
    else:
        app.command(help=simulate.__doc__, short_help="Replay a trace under several policies.")(simulate)
        from optalloc.cli.rl import rl_app  # optalloc.rl itself is imported inside its commands

        app.add_typer(rl_app, name="rl", short_help="Train and evaluate a learned scheduler (DQN, PPO).")
    try:
        from optalloc.cli.watch import watch
    except ImportError as exc:  # the adaptive extras are optional
        logging.getLogger(__name__).debug("watch unavailable: %s", exc)
        return
    app.command(help=watch.__doc__, short_help="Watch a cluster through Prometheus (dry run).")(watch)


def _counts(specs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not value.isdigit():
            raise ProblemError("--cluster", spec, "is not TYPE=GPUS (e.g. v100=500)")
        counts[name] = int(value)
    return counts


def _wrote(out: Path, problem: object) -> None:
    d = problem.describe()  # type: ignore[attr-defined]
    out_console.print(f"wrote {out}: {d['nodes']} nodes ({d['gpus']} GPUs), {d['jobs']} jobs")


_register_optional()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line and exit status 2 for bad input, never a traceback.

    Usage errors are typer's own (exit status 2 as well); ``verify`` exits 1 on violations.
    """
    try:
        code = app(args=argv, prog_name="optalloc", standalone_mode=False)
    except (OptallocError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        message = str(exc) if isinstance(exc, OptallocError) else f"{exc.strerror}: {exc.filename}"
        _fail(message)
    except typer.Abort:
        _fail("aborted")
    except Exception as exc:
        # Usage errors (a missing argument, a bad option value) come from the click that typer vendors:
        # they carry an exit code and a formatted message. Anything else is a bug: let it raise.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        _fail(exc.format_message().replace("\n", " "), exc.exit_code or 2)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, status: int = 2) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(status)


__all__ = ["__version__", "app", "main"]
