"""Learned scheduler benchmark: DQN (and PPO) trained on windows of the Gavel trace, evaluated on held-out
windows of it and on the openb trace (a family it never saw), against every fixed policy it chooses
from, the random policy, the best fixed one in hindsight and the rolling-horizon controller.

Run: ``python benchmarks/rl_eval.py [--traces DIR] [--steps 20000] [--ppo-steps 10000] [--seed 0]
[--budget 0.2] [--tick 3600] [--out benchmarks/results/rl_eval.md] [--img docs/img] [--models DIR]
[--quick]``. ``--quick`` is a smoke run (two windows each, two fixed policies).

Setting (stated in the output): Gavel msr 0e4a51 on 8 V100 + 8 P100 + 8 K80 GPUs (three 8-GPU servers:
a loaded cluster, where the order of the queue matters), estimates = the V100 runtimes; episodes of
100 consecutive jobs from the first 800 jobs (windows starting every 20 jobs); the agent picks, at every
controller step with something to decide, one of the ``compact`` arms (five queue orderings x best-fit
and FGD, or an exact CP-SAT re-solve with the rolling-horizon loop's duration tiers); reward: minus the
job-seconds in the system (the mean JCT). Held out: six windows of 100 jobs from job 800 on (the last
27 days of the trace), and five windows of 200 pods of openb, every 1,500 pods from pod 750 (``openb_pod_list_default``, 4 nodes,
inter-arrivals / 32: loaded enough that pods queue). Every run starts empty and lasts until its last job finishes.

Three agents: DQN over the compact arms, DQN over the compact heuristic arms alone (no exact re-solve:
fully deterministic), PPO over the compact arms. Each policy runs on every held-out window with three
usage seeds; a window's figure is the mean over its seeds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from sim_common import REPO, command_line, default_traces, machine

from optalloc import rl
from optalloc.rl import evaluate as ev
from optalloc.sim import SimConfig, gavel_scenario, openb_scenario

GAVEL_COUNTS = {"v100": 8, "p100": 8, "k80": 8}
TRAIN_STARTS = list(range(0, 701, 20))
GAVEL_HELD_OUT = [800, 856, 912, 968, 1024, 1080]
OPENB_HELD_OUT = [750, 2250, 3750, 5250, 6750]  # every 1,500 pods
OPENB_NODES, OPENB_COMPRESS = 4, 32.0  # a window of 200 pods must queue for the order to matter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--steps", type=int, default=20_000, help="DQN training steps (decisions)")
    parser.add_argument("--ppo-steps", type=int, default=10_000, help="PPO training steps (0: no PPO)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds of the exact arm and the exact policies")
    parser.add_argument("--tick", type=float, default=3600.0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rl_eval.md"))
    parser.add_argument("--img", default=str(REPO / "docs" / "img"))
    parser.add_argument("--models", default=None, help="where the trained models go (default: next to --out)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, two windows each")
    args = parser.parse_args(argv)
    traces = Path(args.traces)
    gavel_dir = traces / "gavel"
    pods = traces / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    if not (gavel_dir.exists() and pods.exists()):
        print(f"traces not found under {traces} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    gavel = gavel_scenario(
        gavel_dir / "msr" / "seed=0" / "0e4a51.trace", gavel_dir / "simulation_throughputs.json", GAVEL_COUNTS
    )
    openb = openb_scenario(pods, nodes=OPENB_NODES, compress=OPENB_COMPRESS)
    train_starts, gavel_held, openb_held, window, openb_window = TRAIN_STARTS, GAVEL_HELD_OUT, OPENB_HELD_OUT, 100, 200
    if args.quick:
        train_starts, gavel_held, openb_held, window, openb_window = [0, 20], [800, 1080], [1000, 4000], 30, 40
    config = SimConfig(tick=args.tick)
    seeds = [args.seed] if args.quick else [args.seed, args.seed + 1, args.seed + 2]
    models = Path(args.models) if args.models else Path(args.out).with_suffix("")
    models.mkdir(parents=True, exist_ok=True)
    img = Path(args.img)
    img.mkdir(parents=True, exist_ok=True)
    prefix = Path(args.out).stem

    # Training ------------------------------------------------------------------------------------
    trained: dict[str, rl.Trained] = {}
    names: list[str] = []
    baselines: dict[int, float] = {}
    heuristic_arms = [a for a in rl.COMPACT if a != rl.EXACT]
    for label, algo, arms, steps in (
        ("dqn", "dqn", "compact", args.steps),
        ("dqn-heuristics", "dqn", heuristic_arms, args.steps),
        ("ppo", "ppo", "compact", args.ppo_steps),
    ):
        if steps <= 0:
            continue
        env = rl.AllocationEnv(  # the same windows and baseline for every agent
            gavel,
            arms=arms,
            window=window,
            starts=train_starts,
            sim=config,
            budget=args.budget,
            baseline=None if args.quick else "sjf+best-fit",
        )
        env.baseline_jcts = baselines  # computed once for all agents (same windows and settings)
        print(f"training {label} for {steps} steps", file=sys.stderr)
        about = {"trace": "gavel msr 0e4a51", "cluster": GAVEL_COUNTS, "window": window, "starts": train_starts}
        result = rl.train(env, algo=algo, steps=steps, seed=args.seed, trained_on=about, progress=_progress(label))
        path = rl.save(result, models / f"{label}.zip")
        title = f"{label.upper()} on Gavel windows ({steps} steps, {env.action_space.n} arms)"
        rl.write_curve(result, img / f"{prefix}_{label.replace('-', '_')}_curve", title=title)
        trained[label] = result
        names.append(f"{algo}:{path}")

    # Evaluation ----------------------------------------------------------------------------------
    fixed = [a for a in rl.COMPACT if a != rl.EXACT] if not args.quick else ["fcfs+best-fit", "sjf+best-fit"]
    compared = [*names, *fixed, "rolling-horizon", "random"]
    runs: dict[str, list[ev.Outcome]] = {}
    seconds: dict[str, float] = {}
    for label, scenario, starts, size in (
        ("gavel", gavel, gavel_held, window),
        ("openb", openb, openb_held, openb_window),
    ):
        started = time.perf_counter()
        report = _reporter(label)
        runs[label] = ev.evaluate(
            scenario,
            compared,
            starts=starts,
            window=size,
            seeds=seeds,
            config=config,
            budget=args.budget,
            progress=report,
        )
        seconds[label] = time.perf_counter() - started

    # Report --------------------------------------------------------------------------------------
    short = {n: n.partition(":")[0] + ":" + Path(n.partition(":")[2]).name for n in names}
    lines = [
        "# Learned scheduler: DQN and PPO against every fixed policy",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}; PyTorch on 1 thread.",
        "",
        f"Training: {gavel.description}; cluster {GAVEL_COUNTS}; episodes of {window} jobs starting at jobs "
        f"{train_starts[0]}..{train_starts[-1]} (every {train_starts[1] - train_starts[0] if len(train_starts) > 1 else 0});"
        f" ticks every {args.tick:g} s; the exact arm and the exact policies get {args.budget:g} s per re-solve.",
        "",
        "| model | steps | episodes | training time | file |",
        "|---|---:|---:|---:|---|",
    ]
    for (label, result), name in zip(trained.items(), names, strict=True):
        arms = len(result.env.arm_names)
        lines.append(
            f"| {label} ({arms} arms) | {result.steps:,} | {len(result.curve)} | {result.seconds / 60:.1f} min | "
            f"`{short[name]}` |"
        )
    for label, title, starts, size in (
        ("gavel", "Held-out windows of the Gavel trace (the same family, later jobs)", gavel_held, window),
        ("openb", "openb, a trace family it was not trained on", openb_held, openb_window),
    ):
        outcomes = [_rename(o, short) for o in runs[label]]
        lines += [
            "",
            f"## {title}",
            "",
            f"Windows of {size} jobs starting at {starts}, usage seeds {seeds}; every run until its last job "
            f"finishes ({seconds[label] / 60:.1f} min for all runs). Each cell: mean [95% interval] (median) over "
            f"the {len(starts)} windows, each window's value the mean over its seeds; sorted by mean JCT, the "
            "metric the reward targets.",
            "",
            ev.table(
                outcomes,
                target="mean_jct",
                metrics=["mean_jct", "p95_jct", "mean_wait", "gpu_allocation", "completion_rate"],
            ),
            "",
        ]
        lines += _verdict(outcomes, [short[n] for n in names], fixed)
    lines += ["", "## Cost of a decision", ""]
    for label in runs:
        for n in names:
            outs = [o for o in runs[label] if o.policy == n and o.decisions]
            if outs:
                per = sorted(o.decision_seconds / o.decisions * 1000 for o in outs)
                lines.append(
                    f"- {short[n]} on {label}: median {per[len(per) // 2]:.2f} ms per decision (observation + "
                    f"network; {sum(o.decisions for o in outs):,} decisions)"
                )
    lines += [
        "",
        "Learning curves: " + ", ".join(f"`docs/img/{prefix}_{a.replace('-', '_')}_curve.png`" for a in trained) + ".",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def _progress(algo: str):
    last = [-1]

    def report(p: rl.Progress) -> None:
        if p.done // 1000 != last[0]:
            last[0] = p.done // 1000
            print(f"  {algo} {p.done}/{p.total} steps, {p.episodes} episodes", file=sys.stderr, flush=True)

    return report


def _reporter(label: str):
    def report(name: str, done: int, total: int) -> None:
        print(f"  {label} {done}/{total} {name}", file=sys.stderr)

    return report


def _rename(outcome: ev.Outcome, short: dict[str, str]) -> ev.Outcome:
    import dataclasses

    return dataclasses.replace(outcome, policy=short.get(outcome.policy, outcome.policy))


def _verdict(outcomes: list[ev.Outcome], learned: list[str], fixed: list[str]) -> list[str]:
    """The best fixed policy in hindsight, and each learned policy against it window by window."""
    jct = ev.summarise(outcomes, "mean_jct")
    best = min((p for p in fixed if p in jct), key=lambda p: jct[p].mean)
    out = [f"Best fixed policy in hindsight (lowest mean JCT here): `{best}`."]
    by = {(o.policy, o.start, o.seed): o.mean_jct for o in outcomes}
    for name in learned:
        ratios = [
            by[(name, s, seed)] / by[(best, s, seed)]
            for (p, s, seed) in by
            if p == name and (best, s, seed) in by and by[(best, s, seed)] > 0
        ]
        if not ratios:
            continue
        ratios.sort()
        median = ratios[len(ratios) // 2]
        wins = sum(r < 1 - 1e-9 for r in ratios)
        ties = sum(abs(r - 1) <= 1e-9 for r in ratios)
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        verdict = "beats" if geo < 0.99 else ("matches" if geo <= 1.01 else "loses to")
        out.append(
            f"`{name}` {verdict} it: mean JCT ratio {geo:.3f} (geometric mean over the windows; median "
            f"{median:.3f}), lower on {wins} windows, equal on {ties}, higher on {len(ratios) - wins - ties}."
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
