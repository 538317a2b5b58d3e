"""``optalloc rl train`` and ``optalloc rl eval``: train a DQN or PPO scheduler on a trace, and
evaluate trained policies against the fixed ones on windows they never saw.

Registered on the main app by ``optalloc.cli`` as the ``rl`` group; :mod:`optalloc.rl` (gymnasium,
stable-baselines3, torch: the ``rl`` extra) is imported inside the commands, so the rest of the
command line works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optalloc.cli.simulate import load_scenario
from optalloc.core import ProblemError

rl_app = typer.Typer(
    help="Train a learned scheduler (DQN, PPO) on a trace and evaluate it against the fixed policies.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TraceOption = Annotated[
    Path,
    typer.Option("--trace", "-t", help="Gavel trace (.trace), openb pod list (.csv) or problem file (.json/.yaml)."),
]
ClusterOption = Annotated[
    list[str] | None,
    typer.Option("--cluster", "-c", help="Gavel: GPUs per type (v100=8,p100=8,k80=8); openb: a node count (24)."),
]


def _rl() -> Any:
    try:
        from optalloc import rl
    except ImportError as exc:  # the rl extra is optional
        raise ProblemError("rl", str(exc), "needs the rl extra: pip install 'optalloc[rl]'") from None
    return rl


def _arms(spec: str) -> str | list[str]:
    return [a.strip() for a in spec.split(",") if a.strip()] if "," in spec else spec


def _starts(spec: str | None, total: int, window: int, skip: int, count: int | None) -> list[int]:
    """Window starts: an explicit comma list, or disjoint windows from ``skip`` (``count`` of them)."""
    if spec:
        try:
            return [int(s) for s in spec.split(",") if s.strip()]
        except ValueError:
            raise ProblemError("--starts", spec, "is not a comma-separated list of job positions") from None
    starts = list(range(skip, max(skip + 1, total - window + 1), window))
    return starts[:count] if count is not None else starts


@rl_app.command("train")
def train(
    trace: TraceOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.zip); the curve goes next to it.")],
    cluster: ClusterOption = None,
    algo: Annotated[str, typer.Option(help="dqn (replay buffer, epsilon-greedy, target network) or ppo.")] = "dqn",
    steps: Annotated[int, typer.Option(help="Training steps (decisions).", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the agent, its network and the episodes.")] = 0,
    mode: Annotated[str, typer.Option(help="algorithm (which ordering x rule, or exact) or job (which job next).")] = (
        "algorithm"
    ),
    arms: Annotated[str, typer.Option(help="Algorithm mode's actions: all, compact, or a comma list.")] = "compact",
    rule: Annotated[str, typer.Option(help="Job mode's placement rule.")] = "best-fit",
    reward: Annotated[str, typer.Option(help="What the reward targets: jct, wait or alloc.")] = "jct",
    window: Annotated[int, typer.Option(help="Jobs per episode (consecutive, by arrival).", min=1)] = 100,
    starts: Annotated[
        str | None, typer.Option(help="Episode windows' first jobs, comma list (default: disjoint).")
    ] = None,
    skip: Annotated[int, typer.Option(help="Train on jobs from this position on (by arrival).", min=0)] = 0,
    jobs: Annotated[int | None, typer.Option(help="Train on this many jobs (after --skip).", min=1)] = None,
    tick: Annotated[float, typer.Option(help="Seconds between controller ticks (observations).", min=0)] = 600.0,
    budget: Annotated[float, typer.Option(help="Seconds of the exact arm's CP-SAT re-solve.", min=0.01)] = 0.5,
    throughputs: Annotated[Path | None, typer.Option(help="Gavel simulation_throughputs.json.")] = None,
    compress: Annotated[float, typer.Option(help="openb: divide inter-arrival times by this.", min=0.001)] = 1.0,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads.", min=1)] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a DQN or PPO scheduler on windows of a trace; write the model and its learning curve."""
    rl = _rl()
    if out.suffix != ".zip":
        raise ProblemError("--out", str(out), "is not a .zip path")
    if algo not in rl.ALGOS:
        raise ProblemError("--algo", algo, f"is not one of {', '.join(rl.ALGOS)}")
    from optalloc.sim import SimConfig

    scenario = load_scenario(trace, cluster, throughputs=throughputs, compress=compress)
    part = scenario.select(skip, jobs) if (skip or jobs is not None) else scenario
    size = min(window, len(part.jobs))
    env = rl.AllocationEnv(
        part,
        mode=mode,
        arms=_arms(arms),
        rule=rule,
        reward=rl.Reward.named(reward),
        window=size,
        starts=_starts(starts, len(part.jobs), size, 0, None),
        sim=SimConfig(tick=tick),
        budget=budget,
    )
    about = {
        "trace": trace.name,
        "scenario": part.description,
        "skip": skip,
        "jobs": len(part.jobs),
        "window": size,
        "starts": list(env.starts),
    }
    console = Console(stderr=True)
    if quiet:
        trained = rl.train(env, algo=algo, steps=steps, seed=seed, threads=threads, trained_on=about)
    else:
        console.print(f"{part.description}: {len(env.starts)} windows of {size} jobs, {env.action_space.n} actions")
        with Progress(
            TextColumn(f"{algo} {mode}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps, {task.fields[episodes]} episodes, last return {task.fields[last]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("train", total=steps, episodes=0, last="-")

            def report(p: Any) -> None:
                last = "-" if p.last_reward != p.last_reward else f"{p.last_reward:.2f}"
                bar.update(task, completed=p.done, episodes=p.episodes, last=last)

            trained = rl.train(
                env, algo=algo, steps=steps, seed=seed, threads=threads, progress=report, trained_on=about
            )
    path = rl.save(trained, out)
    files = [path, *rl.write_curve(trained, out.with_suffix(""))]
    if not quiet:
        console.print(
            f"trained {algo} for {steps} steps ({len(trained.curve)} episodes) in {trained.seconds:.1f} s; "
            f"wrote {', '.join(str(f) for f in files)}"
        )


@rl_app.command("eval")
def evaluate(
    trace: TraceOption,
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy",
            "-p",
            help="Policies (repeat): dqn:MODEL.zip, ppo:MODEL.zip, random, random-job, and simulator policies.",
        ),
    ],
    cluster: ClusterOption = None,
    window: Annotated[int, typer.Option(help="Jobs per window.", min=1)] = 100,
    starts: Annotated[
        str | None, typer.Option(help="Windows' first jobs, comma list (default: disjoint from --skip).")
    ] = None,
    skip: Annotated[int, typer.Option(help="First window starts here (held-out jobs).", min=0)] = 0,
    windows: Annotated[int, typer.Option(help="Number of disjoint windows (without --starts).", min=1)] = 5,
    seeds: Annotated[int, typer.Option(help="Usage seeds per window.", min=1)] = 1,
    target: Annotated[str, typer.Option(help="Metric to sort by: mean_jct, p95_jct, mean_wait, gpu_allocation.")] = (
        "mean_jct"
    ),
    tick: Annotated[float, typer.Option(help="Seconds between controller ticks (observations).", min=0)] = 600.0,
    budget: Annotated[
        float, typer.Option(help="Seconds per re-solve of the exact simulator policies.", min=0.01)
    ] = 0.5,
    throughputs: Annotated[Path | None, typer.Option(help="Gavel simulation_throughputs.json.")] = None,
    compress: Annotated[float, typer.Option(help="openb: divide inter-arrival times by this.", min=0.001)] = 1.0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table (markdown) here too.")] = None,
    processes: Annotated[int, typer.Option(help="Runs side by side in this many processes.", min=1)] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate policies on windows of a trace: mean [95% interval] (median) per metric."""
    rl = _rl()
    from optalloc.rl import evaluate as ev
    from optalloc.sim import SimConfig

    if target not in ev.METRICS:
        raise ProblemError("--target", target, f"is not one of {', '.join(ev.METRICS)}")
    for name in policy:  # a missing or foreign model file is reported before any run starts
        if rl.is_learned(name):
            rl.read_meta(name.partition(":")[2])
    scenario = load_scenario(trace, cluster, throughputs=throughputs, compress=compress)
    size = min(window, len(scenario.jobs))
    chosen = _starts(starts, len(scenario.jobs), size, skip, windows)
    console = Console(stderr=True)
    kwargs: dict[str, Any] = {
        "starts": chosen,
        "window": size,
        "seeds": list(range(seeds)),
        "config": SimConfig(tick=tick),
        "budget": budget,
        "processes": processes,
    }
    if quiet:
        outcomes = ev.evaluate(scenario, policy, **kwargs)
    else:
        with Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task("runs", total=len(policy) * len(chosen) * seeds)

            def report(name: str, done: int, total: int) -> None:
                bar.update(task, completed=done, description=name[-24:])

            outcomes = ev.evaluate(scenario, policy, progress=report, **kwargs)
    text = (
        f"{scenario.description}; windows of {size} jobs from {chosen}, seeds 0..{seeds - 1}, tick {tick:g} s\n\n"
        + ev.table(outcomes, target=target)
        + "\n\nEach cell: mean [95% interval] (median) over the runs.\n"
    )
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


__all__ = ["rl_app"]
