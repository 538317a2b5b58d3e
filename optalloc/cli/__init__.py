"""The ``optalloc`` command line: import traces, plan allocations, verify them, compare methods.

Bad input prints one line (``error: jobs[3].gpus: -1 is negative``) and exits with status 2;
``verify`` exits 1 when the allocation breaks a rule.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from optalloc import Allocation, OptallocError, ProblemError, Status, __version__
from optalloc.cli import render, whatif
from optalloc.cli._files import check_output_file
from optalloc.cli._run import Interrupted, run_interruptibly
from optalloc.cli.status import StatusLine
from optalloc.core import LIMITS, OutputError

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

Force = Annotated[
    bool, typer.Option("--force", help="Replace an existing output file (never one of the command's inputs).")
]


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
    force: Force = False,
) -> None:
    """Import an Alibaba openb node list and pod list (the FGD paper's traces)."""
    from optalloc.io import openb, write_problem

    check_output_file(out, inputs=(nodes, pods), force=force)
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
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per synthetic server.", min=1, max=LIMITS.gpus_per_node)] = 8,
    gang: Annotated[
        bool, typer.Option(help="Model a k-GPU job as k one-GPU replicas (a gang) instead of one replica.")
    ] = False,
    force: Force = False,
) -> None:
    """Import a Gavel (Philly-derived) job trace onto synthetic servers."""
    from optalloc.io import gavel, write_problem

    check_output_file(out, inputs=(trace, throughputs), force=force)
    counts = _counts(cluster or ["v100=500"])
    rates = gavel.read_throughputs(throughputs) if throughputs is not None else None
    known = rates.worker_types if rates is not None else gavel.WORKER_TYPES
    for name in counts:
        if name not in known:
            source = throughputs.name if throughputs is not None else "Gavel"
            raise ProblemError("--cluster", name, f"is not a worker type of {source} (known: {', '.join(known)})")
    if worker_type not in known:
        raise ProblemError("--worker-type", worker_type, f"is not a worker type (known: {', '.join(known)})")
    try:
        problem = gavel.gavel_problem(
            trace, counts=counts, gpus_per_node=gpus_per_node, throughputs=rates, worker_type=worker_type, gang=gang
        )
    except ProblemError as err:
        from optalloc.cli.simulate import _as_cluster_option

        raise _as_cluster_option(err) from None
    write_problem(problem, out)
    _wrote(out, problem)


@import_app.command("csv", short_help="Import generic CSV exports (Kubernetes units).")
def import_csv(
    nodes: Annotated[Path, typer.Option("--nodes", help="Nodes CSV: columns are Node fields (units allowed).")],
    jobs: Annotated[Path, typer.Option("--jobs", help="Jobs CSV: columns are Job fields (units allowed).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Problem file to write.")],
    force: Force = False,
) -> None:
    """Import generic CSV exports (Kubernetes-style units such as 500m and 16Gi are understood)."""
    from optalloc import Problem
    from optalloc.io import read_jobs_csv, read_nodes_csv, write_problem

    check_output_file(out, inputs=(nodes, jobs), force=force)
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
    show_unplaced: Annotated[int, typer.Option(help="How many unplaced jobs to list.", min=0)] = 10,
    parts: Annotated[int, typer.Option(help="--method pop: how many scaled copies to solve in parallel.", min=1)] = 4,
    inner: Annotated[str, typer.Option(help="--method pop: the method each part is solved with.")] = "auto",
    executor: Annotated[
        str,
        typer.Option(help="--method pop: where the parts run (auto: Ray when running or --ray-address, else local)."),
    ] = "auto",
    ray_address: Annotated[
        str | None,
        typer.Option(envvar="OPTALLOC_RAY_ADDRESS", help="--method pop: a running Ray cluster (host:port, or auto)."),
    ] = None,
    force: Force = False,
    keep_partial: Annotated[
        bool,
        typer.Option(
            "--keep-partial", help="On Ctrl-C, still write and print the best answer found so far (exit status 130)."
        ),
    ] = False,
) -> None:
    """Allocate a problem and print a summary (write the allocation with --out).

    On a terminal a status line shows the search (engine, incumbent, bound, gap, time). Ctrl-C stops
    the search: nothing is written unless --keep-partial (exit status 130 either way)."""
    from optalloc.io import allocation_to_dict, read_allocation, read_problem
    from optalloc.io._documents import dump
    from optalloc.solve import preload, solve

    if out is not None:
        check_output_file(out, inputs=(problem_path, previous), force=force)
    problem = read_problem(problem_path)
    said = err_console if as_json else out_console  # --json keeps stdout for the allocation alone
    changes: list[str] = []
    for spec in add_like or []:
        node, count = whatif.parse_add(spec)
        problem = whatif.add_like(problem, node, count)
        changes.append(whatif.describe_add(problem, node, count))
    for model in remove_model or []:
        before, problem = problem, whatif.remove_model(problem, model)
        changes.append(whatif.describe_remove(before, problem, model))
    for line in changes:
        said.print(line, markup=False, highlight=False)
    prev = read_allocation(previous) if previous is not None else None
    if prev is not None and problem.current is not None and problem.current.placements:
        raise ProblemError(
            "--previous",
            str(previous),
            f"is given, but {problem_path.name} already has a 'current' allocation: pass one or the other",
        )
    preload(method)  # the engines' imports are the command's start-up, not the search's time limit
    halt = threading.Event()
    live = StatusLine(sys.stderr, method, err_console.width) if err_console.is_terminal and not as_json else None

    def search() -> Allocation:
        return solve(
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
            parts=parts,
            inner=inner,
            executor=executor,
            ray_address=ray_address,
            stop=halt,
            on_progress=live.report if live is not None else None,
        )

    try:
        outcome = run_interruptibly(search, on_interrupt=halt.set, tick=live.draw if live is not None else None)
    finally:
        if live is not None:
            live.clear()
    answer = outcome.value
    if outcome.interrupted and not keep_partial:
        raise Interrupted(
            "interrupted: the search stopped before its end; nothing written "
            "(--keep-partial keeps the best answer found so far)"
        )
    if prev is not None:
        from optalloc.solve import with_previous

        problem = with_previous(problem, prev)
    document = allocation_to_dict(answer, problem)
    if changes:
        document["summary"]["what_if"] = changes
    if out is not None:
        dump(document, out)
    kept = (
        f"interrupted: kept the best answer found so far ({answer.status.value}, gap {render.percent(answer.gap)})"
        + (f" in {out}" if out is not None else "")
    )
    if as_json:
        _write_stdout(json.dumps(document, indent=1) + "\n")
        if outcome.interrupted:
            raise Interrupted(kept)
        return
    out_console.print(render.summary_table(problem, answer, title=f"Allocation of {problem_path.name}"))
    if "admission" in answer.stats:
        out_console.print(f"admission control: {answer.stats['admission']}", markup=False, highlight=False)
    if answer.unplaced and show_unplaced > 0:
        out_console.print(render.unplaced_table(answer, show_unplaced))
    if prev is not None:
        moves = answer.diff(prev, problem)
        out_console.print(
            f"changes from {previous}: {len(moves.starts)} start(s), {len(moves.stops)} stop(s), "
            f"{len(moves.migrations)} migration(s); {len(moves.finished)} job(s) of it are no longer in the problem",
            markup=False,
            highlight=False,
        )
    if out is not None:
        out_console.print(f"wrote {out}", markup=False, highlight=False, soft_wrap=True)
    if outcome.interrupted:
        raise Interrupted(kept)


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
    max_nodes: Annotated[int, typer.Option(help="Give up above this many added nodes.", min=1)] = 4096,
    time_limit: Annotated[float, typer.Option(help="Seconds per trial for exact engines.")] = 5.0,
) -> None:
    """How many more nodes like --like it takes to place every job that any node could host."""
    from optalloc.io import read_problem
    from optalloc.solve import preload, solve

    problem = read_problem(problem_path)
    whatif.add_like(problem, like, 0, option="--like")  # a bad --like fails before any trial
    preload(method)
    room = LIMITS.nodes - len(problem.nodes)
    if max_nodes > room:
        raise ProblemError("--max-nodes", max_nodes, f"would make more than {LIMITS.nodes:,} nodes (docs/limits.md)")

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
    time_limit: Annotated[
        float, typer.Option(help="Deterministic seconds for the exact engine (about as many wall seconds).")
    ] = 5.0,
) -> None:
    """Generate the embedded default workload, run the main methods, print them side by side.

    Deterministic: CP-SAT runs with one worker and a deterministic time limit, so every figure but the
    times is the same on every run and every machine."""
    from optalloc.io import demo_problem
    from optalloc.solve import preload, solve

    preload("auto")
    problem = demo_problem(seed)
    d = problem.describe()
    out_console.print(
        f"Synthetic cluster modelled on the Alibaba openb mix (seed {seed}): {d['nodes']} nodes, {d['gpus']} GPUs, "
        f"{d['jobs']} jobs asking for {d['gpu_milli_requested'] / 1000:,.1f} GPUs."
    )
    answers = [solve(problem, m, order="fcfs", seed=seed) for m in ("first-fit", "best-fit", "dot-product", "fgd")]
    halt = threading.Event()
    outcome = run_interruptibly(
        lambda: solve(problem, "auto", time_limit=time_limit, seed=seed, deterministic=True, stop=halt),
        on_interrupt=halt.set,
    )
    if outcome.interrupted:
        raise Interrupted("interrupted: the demo stopped before CP-SAT's answer")
    answers.append(outcome.value)
    out_console.print(render.comparison_table(problem, answers))
    out_console.print(render.comparison_table.__doc__ or "")
    # The figures repeat when the search ended on its own terms (the optimum proven, within the deterministic
    # limit); when the clock ended a stage first (a busy machine), the search may have ended elsewhere.
    final = answers[-1]
    if final.stats.get("wall_clock_stopped") or final.status is not Status.OPTIMAL:
        out_console.print(
            "The wall clock ended the search before the optimum was proven (a busy or slow machine): "
            "these figures may differ from another run's; a larger --time-limit repeats them."
        )
    else:
        out_console.print(
            "Deterministic: CP-SAT ran with one worker and a deterministic time limit; every figure but the "
            "times repeats run to run (a multi-worker search, e.g. `optalloc plan --method auto`, may differ)."
        )
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
    try:
        from optalloc.cli.watch import watch
    except ImportError as exc:  # the adaptive extras are optional
        logging.getLogger(__name__).debug("watch unavailable: %s", exc)
        return
    app.command(help=watch.__doc__, short_help="Watch a cluster through Prometheus (dry run).")(watch)
    from optalloc.cli.serve import serve  # imports fastapi and uvicorn only when it runs

    app.command(help=serve.__doc__, short_help="Run the allocation service (HTTP API, dashboard).")(serve)


def _counts(specs: list[str]) -> dict[str, int]:
    """``--cluster`` values (``v100=500``, also ``v100=8,p100=8``): GPUs per type, each type once."""
    counts: dict[str, int] = {}
    for spec in specs:
        for part in spec.split(","):
            name, sep, value = part.strip().partition("=")
            if not sep or not name.strip() or not value.strip().isdigit() or not value.strip().isascii():
                raise ProblemError("--cluster", part, "is not TYPE=GPUS (e.g. v100=500)")
            name = name.strip()
            if name in counts:
                raise ProblemError("--cluster", part, f"names {name} again (give each type once)")
            if len(value.strip()) > 12:
                raise ProblemError("--cluster", part, "asks for more GPUs than any cluster has (docs/limits.md)")
            counts[name] = int(value)
    return counts


def _wrote(out: Path, problem: object) -> None:
    d = problem.describe()  # type: ignore[attr-defined]
    out_console.print(f"wrote {out}: {d['nodes']} nodes ({d['gpus']} GPUs), {d['jobs']} jobs")


_register_optional()


#: Exit statuses: 0 done; 1 a check failed (``verify``) or a result could not be written; 2 bad input
#: or usage, before any result is written; 130 interrupted (Ctrl-C).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line and exit status 2 for bad input, never a traceback.

    Usage errors are typer's own (exit status 2 as well); ``verify`` exits 1 on violations, any
    command 1 when it cannot write its result, and 130 when interrupted (Ctrl-C).
    """
    try:
        _main(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the first one was being reported
        _ignore_further_interrupts()
        sys.exit(EXIT_INTERRUPTED)


def _main(argv: list[str] | None) -> None:
    try:
        code = app(args=argv, prog_name="optalloc", standalone_mode=False)
    except Interrupted as exc:  # Ctrl-C, after the command kept what it had
        _fail(str(exc), EXIT_INTERRUPTED)
    except OutputError as exc:  # a result could not be written (full disk, permissions)
        _fail(str(exc), EXIT_FAILED)
    except OptallocError as exc:
        _fail(str(exc))
    except BrokenPipeError:  # `optalloc plan ... --json | head`: the reader left, nothing to say
        _quiet_stdout()
        sys.exit(EXIT_FAILED)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:  # printing the result: stdout redirected to a full disk
            _fail(f"could not write the output: {exc.strerror}", EXIT_FAILED)
        _fail(_os_message(exc))  # reading an input: missing, a folder, no permission, a symlink loop...
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        # Usage errors (a missing argument, a bad option value) come from the click that typer vendors:
        # they carry an exit code and a formatted message. Anything else is a bug: let it raise.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        _fail(exc.format_message().replace("\n", " "), exc.exit_code or 2)
    if code == EXIT_INTERRUPTED:  # typer turns a KeyboardInterrupt in a command into status 130, silently
        _fail("interrupted", EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _write_stdout(text: str) -> None:
    """Write to stdout; a failure (a full disk behind a redirection) is a failed write, status 1."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        raise OutputError(f"could not write to stdout: {err.strerror or err}") from None


#: Errors that only writing raises: a full disk, a quota, a file too large, a read-only file system.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename is not None else reason


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _ignore_further_interrupts() -> None:
    """Once a Ctrl-C is being reported, another one (a key held down) must not turn the exit into a
    traceback or a death by signal while the interpreter shuts down."""
    import contextlib
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: main() called from a caller's thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    if status == EXIT_INTERRUPTED:
        _ignore_further_interrupts()
    err_console.print(f"error: {_printable(message)}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(status)


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a file name must not rewrite the terminal."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text.replace("\n", " "))


__all__ = ["__version__", "app", "main"]
