"""Learned scheduler benchmark: DQN (and PPO) trained on windows of the Gavel trace, evaluated on held-out
windows of it and on the openb trace (a family it never saw), against every fixed (ordering, placement)
policy, the random policies, the best fixed one in hindsight and the rolling-horizon controller.

Run: ``python benchmarks/rl_eval.py [--traces DIR] [--steps 20000] [--ppo-steps 10000] [--job-steps 20000]
[--seed 0] [--seeds 5] [--budget 0.2] [--tick 3600] [--fixed all|compact] [--screen FAMILY=K]
[--processes N] [--reuse] [--cache FILE] [--train-only] [--cost-only] [--out benchmarks/results/rl_eval.md]
[--img docs/img] [--models DIR] [--quick]``. ``--quick`` is a smoke run (64 steps, two small windows
each, three fixed policies).

Setting (stated in the output): Gavel msr 0e4a51 on 8 V100 + 8 P100 + 8 K80 GPUs (three 8-GPU servers:
a loaded cluster, where the order of the queue matters), estimates = the V100 runtimes; episodes of
100 consecutive jobs from the first 800 jobs (windows starting every 20 jobs); reward: minus the
job-seconds in the system (the mean JCT). Held out: six windows of 100 jobs from job 800 on (the last
27 days of the trace), and five windows of 200 pods of openb, every 1,500 pods from pod 750
(``openb_pod_list_default``, 4 nodes, inter-arrivals / 32: loaded enough that pods queue). Every run
starts empty and lasts until its last job finishes.

Four agents: DQN over the ``compact`` arms (five queue orderings x best-fit and FGD, or an exact CP-SAT
re-solve with the rolling-horizon loop's duration tiers), DQN over the compact heuristic arms alone (no
exact re-solve: fully deterministic), PPO over the compact arms, and DQN in the job-choice mode (which of
the first 8 waiting jobs that fit starts next, best-fit placement). ``--reuse`` loads a model already in
``--models`` when its saved settings are this run's (the training time is then the one saved in the
file), else trains it.

Every policy runs on every held-out window with ``--seeds`` usage seeds; a window's figure is the mean
over its seeds. The fixed policies are all 7 x 9 (ordering, placement) pairs (``--fixed all``);
``--screen openb=K`` runs them on the first seed only there and the K best of them on every seed (to fit
the time; the output says so). ``--processes N`` runs the runs side by side (the outcomes are the
serial ones except where a CP-SAT time budget cuts a search: the rolling-horizon loop, the exact arm);
``--cache FILE`` keeps every finished run, so that a later run with the same settings reads it instead
of running it again (the output counts them). ``--cost-only`` measures each model's cost per decision
alone (one process, one window per family) and prints it: the runs of a loaded machine measure more.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim_common import REPO, command_line, default_traces, machine

from optalloc import rl
from optalloc.rl import evaluate as ev
from optalloc.sim import SimConfig, gavel_scenario, openb_scenario

GAVEL_COUNTS = {"v100": 8, "p100": 8, "k80": 8}
TRAIN_STARTS = list(range(0, 701, 20))
GAVEL_HELD_OUT = [800, 856, 912, 968, 1024, 1080]
OPENB_HELD_OUT = [750, 2250, 3750, 5250, 6750]  # every 1,500 pods
OPENB_NODES, OPENB_COMPRESS = 4, 32.0  # a window of 200 pods must queue for the order to matter
HEURISTIC_ARMS = [a for a in rl.COMPACT if a != rl.EXACT]
EVERY_PAIR = [a for a in rl.ALL if a != rl.EXACT]  # every queue ordering x placement rule (7 x 9)


@dataclass(frozen=True)
class Agent:
    """A model the benchmark trains: ``label`` (its file), ``algo``, ``mode`` and, in the algorithm
    mode, its ``arms``; ``steps_option``: the command-line option that sets its training steps."""

    label: str
    algo: str
    mode: str
    arms: str | tuple[str, ...] | None
    steps_option: str

    def what(self, n_actions: int) -> str:
        if self.mode == "job":
            return f"job choice, {n_actions} candidates, best-fit placement"
        return f"algorithm choice, {n_actions} arms"


AGENTS = (
    Agent("dqn", "dqn", "algorithm", "compact", "steps"),
    Agent("dqn-heuristics", "dqn", "algorithm", tuple(HEURISTIC_ARMS), "steps"),
    Agent("ppo", "ppo", "algorithm", "compact", "ppo_steps"),
    Agent("dqn-job", "dqn", "job", None, "job_steps"),
)


@dataclass(frozen=True)
class Model:
    """A model of this run: trained now, or reused from its file (``reused``: its time is the file's)."""

    agent: Agent
    name: str  # the policy name, algo:path
    steps: int
    episodes: int
    seconds: float
    actions: int
    reused: bool
    curve: Path | None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=default_traces())
    parser.add_argument("--steps", type=int, default=None, help="DQN training steps (decisions; 0: no DQN; 20,000)")
    parser.add_argument("--ppo-steps", type=int, default=None, help="PPO training steps (0: no PPO; 10,000)")
    parser.add_argument("--job-steps", type=int, default=None, help="job-choice DQN training steps (0: none; 20,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5, help="usage seeds per held-out window (seed, seed+1, ...)")
    parser.add_argument("--budget", type=float, default=0.2, help="seconds of the exact arm and the exact policies")
    parser.add_argument("--tick", type=float, default=3600.0)
    parser.add_argument("--fixed", choices=("all", "compact"), default="all", help="fixed pairs: all 63 or the 10 arms")
    parser.add_argument(
        "--screen",
        action="append",
        default=[],
        metavar="FAMILY=K",
        help="on FAMILY (gavel, openb), run the fixed pairs on the first seed only, then the K best of them on "
        "every seed (repeatable; default: every pair on every seed)",
    )
    parser.add_argument("--processes", type=int, default=1, help="runs side by side in this many processes")
    parser.add_argument("--reuse", action="store_true", help="load the models already in --models when they match")
    parser.add_argument(
        "--cache",
        default=None,
        help="a JSON-lines file of finished runs: runs found there (same family, window, settings, policy -- a "
        "model by its file's hash --, start and seed) are read, not run again; new runs are appended",
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="train (or reuse) the models, then print each one's cost per decision on one window of each family "
        "(alone in one process), and write nothing",
    )
    parser.add_argument("--train-only", action="store_true", help="train (or reuse) the models, evaluate nothing")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rl_eval.md"))
    parser.add_argument("--img", default=str(REPO / "docs" / "img"))
    parser.add_argument("--models", default=None, help="where the trained models go (default: next to --out)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 steps, two small windows each")
    args = parser.parse_args(argv)
    for option, steps in (("steps", 20_000), ("ppo_steps", 10_000), ("job_steps", 20_000)):
        if getattr(args, option) is None:
            setattr(args, option, 64 if args.quick else steps)
    traces = Path(args.traces)
    gavel_dir = traces / "gavel"
    pods = traces / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
    if not (gavel_dir.exists() and pods.exists()):
        print(f"traces not found under {traces} (use --traces or OPTALLOC_TRACES)", file=sys.stderr)
        return 2
    if args.processes < 1 or args.seeds < 1:
        print("--processes and --seeds must be at least 1", file=sys.stderr)
        return 2
    screen: dict[str, int] = {}
    for item in args.screen:
        family, _, k = item.partition("=")
        if family not in ("gavel", "openb") or not k.isdigit() or int(k) < 1:
            print(f"--screen {item!r} is not gavel=K or openb=K (K >= 1)", file=sys.stderr)
            return 2
        screen[family] = int(k)
    gavel = gavel_scenario(
        gavel_dir / "msr" / "seed=0" / "0e4a51.trace", gavel_dir / "simulation_throughputs.json", GAVEL_COUNTS
    )
    openb = openb_scenario(pods, nodes=OPENB_NODES, compress=OPENB_COMPRESS)
    train_starts, gavel_held, openb_held, window, openb_window = TRAIN_STARTS, GAVEL_HELD_OUT, OPENB_HELD_OUT, 100, 200
    if args.quick:
        train_starts, gavel_held, openb_held, window, openb_window = [0, 20], [800, 1080], [1000, 4000], 30, 40
    config = SimConfig(tick=args.tick)
    seeds = [args.seed + k for k in range(args.seeds)]
    models_dir = Path(args.models) if args.models else Path(args.out).with_suffix("")
    models_dir.mkdir(parents=True, exist_ok=True)
    img = Path(args.img)
    img.mkdir(parents=True, exist_ok=True)
    prefix = Path(args.out).stem

    # Training ------------------------------------------------------------------------------------
    import torch

    torch.set_num_threads(1)  # training and inference: one thread, as on a shared machine
    models: list[Model] = []
    baselines: dict[int, float] = {}
    for agent in AGENTS:
        steps = int(getattr(args, agent.steps_option))
        if steps <= 0:
            continue
        env = rl.AllocationEnv(  # the same windows and baseline for every agent
            gavel,
            mode=agent.mode,
            arms=agent.arms if agent.mode == "algorithm" else "compact",
            window=window,
            starts=train_starts,
            sim=config,
            budget=args.budget,
            baseline=None if args.quick else "sjf+best-fit",
        )
        env.baseline_jcts = baselines  # computed once for all agents (same windows and settings)
        about = {"trace": "gavel msr 0e4a51", "cluster": GAVEL_COUNTS, "window": window, "starts": train_starts}
        path = models_dir / f"{agent.label}.zip"
        curve = img / f"{prefix}_{agent.label.replace('-', '_')}_curve"
        actions = int(env.action_space.n)
        meta = _reusable(path, agent, env, steps, args.seed, about) if args.reuse else None
        if meta is not None:
            print(f"reusing {path} (trained in {meta['seconds'] / 60:.1f} min)", file=sys.stderr)
            png = curve.with_suffix(".png")
            models.append(
                Model(
                    agent, f"{agent.algo}:{path}", steps, int(meta["episodes"]), float(meta["seconds"]), actions,
                    True, png if png.exists() else None,
                )
            )  # fmt: skip
            continue
        print(f"training {agent.label} for {steps} steps", file=sys.stderr)
        result = rl.train(
            env, algo=agent.algo, steps=steps, seed=args.seed, trained_on=about, progress=_progress(agent.label)
        )
        rl.save(result, path)
        title = f"{agent.label.upper()} on Gavel windows ({steps} steps, {agent.what(actions)})"
        rl.write_curve(result, curve, title=title)
        models.append(
            Model(
                agent, f"{agent.algo}:{path}", steps, len(result.curve), result.seconds, actions, False,
                curve.with_suffix(".png"),
            )
        )  # fmt: skip
    if args.cost_only:  # each model alone, one window of each family, the first seed
        short = {m.name: m.name.partition(":")[0] + ":" + Path(m.name.partition(":")[2]).name for m in models}
        alone = {
            label: ev.evaluate(
                scenario, [m.name for m in models], starts=held[:1], window=size, seeds=seeds[:1], config=config
            )
            for label, scenario, held, size in (
                ("gavel", gavel, gavel_held, window),
                ("openb", openb, openb_held, openb_window),
            )
        }
        nice = os.nice(0)
        print(f"Cost of a decision, each model alone in one process{f' at nice {nice}' if nice else ''}, on the "
              f"first held-out window of each family (Gavel job {gavel_held[0]}, openb pod {openb_held[0]}), "
              f"seed {seeds[0]}:")  # fmt: skip
        print("\n".join(_cost_lines(alone, models, short)))
        return 0
    if args.train_only:
        for m in models:
            how = "reused" if m.reused else "trained"
            print(f"{m.agent.label}: {how}, {m.steps} steps, {m.episodes} episodes, {m.seconds / 60:.1f} min")
        return 0

    # Evaluation ----------------------------------------------------------------------------------
    names = [m.name for m in models]
    if args.quick:
        fixed = ["fcfs+best-fit", "sjf+best-fit", "ljf+first-fit"]
    else:
        fixed = EVERY_PAIR if args.fixed == "all" else HEURISTIC_ARMS
    others = [*names, "rolling-horizon", "random"]
    if any(m.agent.mode == "job" for m in models):
        others.append("random-job")
    cache = _Cache(Path(args.cache) if args.cache else None, names)
    runs: dict[str, list[ev.Outcome]] = {}
    screens: dict[str, list[ev.Outcome]] = {}
    kept: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    simulated: dict[str, float] = {}
    cached: dict[str, int] = {}
    for label, scenario, starts, size in (
        ("gavel", gavel, gavel_held, window),
        ("openb", openb, openb_held, openb_window),
    ):
        started = time.perf_counter()
        context = [label, scenario.description, len(scenario.jobs), size, args.tick, args.budget]

        def run(policies: list[str], on_seeds: list[int], scenario=scenario, starts=starts, size=size, at=context):
            return ev.evaluate(
                scenario,
                policies,
                starts=starts,
                window=size,
                seeds=on_seeds,
                config=config,
                budget=args.budget,
                progress=_reporter(at[0]),
                processes=args.processes,
                known=cache.known(at, policies, starts, on_seeds),
                on_run=functools.partial(cache.store, at),
            )

        k = screen.get(label)
        if k is None or k >= len(fixed):
            outcomes = run([*others, *fixed], seeds)
            kept[label] = list(fixed)
        else:  # the screen: every pair on the first seed, then the k best of them on the other seeds
            first = run([*others, *fixed], seeds[:1])
            screens[label] = [o for o in first if o.policy in fixed]
            jct = ev.summarise(screens[label], "mean_jct")
            kept[label] = sorted(fixed, key=lambda p: jct[p].mean)[:k]
            rest = run([*others, *kept[label]], seeds[1:]) if len(seeds) > 1 else []
            outcomes = [o for o in first if o.policy in others or o.policy in kept[label]] + rest
        runs[label] = outcomes
        every = outcomes + [o for o in screens.get(label, []) if o.policy not in kept[label]]
        counts[label] = len(every)
        seconds[label] = time.perf_counter() - started
        simulated[label] = sum(o.wall for o in every)
        cached[label] = cache.hits(context)

    # Report --------------------------------------------------------------------------------------
    short = {n: n.partition(":")[0] + ":" + Path(n.partition(":")[2]).name for n in names}
    learned = [short[n] for n in names]
    nice = os.nice(0)
    lines = [
        "# Learned scheduler: DQN and PPO against every fixed policy",
        "",
        f"Command: `{command_line()}` (traces from `../shared/data/traces`). {machine()}; PyTorch on 1 thread; "
        f"{args.processes} process{'es side by side' if args.processes > 1 else ''}"
        + (f", at nice {nice}" if nice else "")
        + ".",
        "",
        f"Training: {gavel.description}; cluster {GAVEL_COUNTS}; episodes of {window} jobs starting at jobs "
        f"{train_starts[0]}..{train_starts[-1]} (every {train_starts[1] - train_starts[0] if len(train_starts) > 1 else 0});"
        f" ticks every {args.tick:g} s; the exact arm and the exact policies get {args.budget:g} s per re-solve; "
        "reward: minus the job-seconds in the system (the mean JCT); seed "
        f"{args.seed}.",
        "",
        "| model | actions | steps | episodes | training time | file |",
        "|---|---|---:|---:|---:|---|",
    ]
    for m in models:
        when = " (reused: the time saved in the file)" if m.reused else ""
        lines.append(
            f"| {m.agent.label} | {m.agent.what(m.actions)} | {m.steps:,} | {m.episodes} | "
            f"{m.seconds / 60:.1f} min{when} | `{short[m.name]}` |"
        )
    lines += [
        "",
        "Baselines: `random` is a uniformly random arm of the compact set (the algorithm-choice agents' "
        "actions) at every decision; `random-job` a uniformly random job among those that fit (the job-choice "
        "agent's actions, best-fit placement); `rolling-horizon` the CP-SAT loop with duration tiers.",
    ]
    for label, title, starts, size in (
        ("gavel", "Held-out windows of the Gavel trace (the same family, later jobs)", gavel_held, window),
        ("openb", "openb, a trace family it was not trained on", openb_held, openb_window),
    ):
        outcomes = [_rename(o, short) for o in runs[label]]
        how = (
            f"{len(fixed)} fixed pairs"
            if label not in screens
            else (
                f"{len(fixed)} fixed pairs screened on seed {seeds[0]} (every window), then the "
                f"{len(kept[label])} best of them on every seed (reduced to fit the time: below)"
            )
        )
        lines += [
            "",
            f"## {title}",
            "",
            f"Windows of {size} jobs starting at {starts}, usage seeds {seeds}; {how}; every run until its "
            f"last job finishes ({counts[label]:,} runs, {simulated[label] / 60:.1f} min of simulation summed over "
            f"the runs; {_took(seconds[label], cached[label], args.cache)}). Each cell: mean [95% "
            f"interval] (median) over the {len(starts)} windows, each window's value the mean over its seeds; "
            "sorted by mean JCT, the metric the reward targets.",
            "",
            ev.table(
                outcomes,
                target="mean_jct",
                metrics=["mean_jct", "p95_jct", "mean_wait", "gpu_allocation", "completion_rate"],
            ),
            "",
        ]
        lines += _verdict(outcomes, learned, kept[label], len(seeds))
        if label in screens:
            lines += [
                "",
                f"The screen: every fixed pair on seed {seeds[0]}, {len(starts)} windows (the {len(kept[label])} "
                "best went on to every seed):",
                "",
                ev.table(
                    screens[label], target="mean_jct", metrics=["mean_jct", "p95_jct", "mean_wait", "gpu_allocation"]
                ),
            ]
    lines += [
        "",
        "## Cost of a decision",
        "",
        f"Measured in the runs above ({args.processes} process{'es' if args.processes > 1 else ''}"
        + (f", nice {nice}" if nice else "")
        + "): the inference (observation and network) per decision; for the job choice also everything the "
        "selector does at a controller step (finding the candidates that fit, placing the jobs picked: the work a "
        "heuristic's placement does), per step that asked it. Median over the runs, and the worst run.",
        "",
    ]
    lines += _cost_lines(runs, models, short)
    curves = [f"`{_shown(m.curve)}`" for m in models if m.curve is not None]
    lines += ["", "Learning curves: " + ", ".join(curves) + "." if curves else "No learning curves.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


class _Cache:
    """Finished runs in a JSON-lines file (``--cache``), by their settings (a model by its file's hash)."""

    def __init__(self, path: Path | None, models: list[str]) -> None:
        import hashlib

        self.path = path
        self.ids = {
            n: f"{n.partition(':')[0]}:{hashlib.sha256(Path(n.partition(':')[2]).read_bytes()).hexdigest()[:16]}"
            for n in models
        }
        self.runs: dict[str, dict[str, Any]] = {}
        self.used: dict[str, int] = {}
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.runs[row["key"]] = row["outcome"]

    def _key(self, context: list[Any], policy: str, start: int, seed: int) -> str:
        return json.dumps([*context, self.ids.get(policy, policy), start, seed])

    def known(self, context: list[Any], policies: list[str], starts: list[int], seeds: list[int]) -> dict:
        found = {}
        for p in policies:
            for start in starts:
                for seed in seeds:
                    row = self.runs.get(self._key(context, p, start, seed))
                    if row is not None:
                        found[(p, start, seed)] = ev.Outcome(**{**row, "policy": p})
        self.used[context[0]] = self.used.get(context[0], 0) + len(found)
        return found

    def store(self, context: list[Any], outcome: ev.Outcome) -> None:
        if self.path is None:
            return
        key = self._key(context, outcome.policy, outcome.start, outcome.seed)
        row = dataclasses.asdict(outcome)
        self.runs[key] = row
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "outcome": row}) + "\n")

    def hits(self, context: list[Any]) -> int:
        return self.used.get(context[0], 0)


def _cost_lines(runs: dict[str, list[ev.Outcome]], models: list[Model], short: dict[str, str]) -> list[str]:
    """Per model and family: the inference per decision (and the job choice's selector per step)."""
    lines = []
    for label, outcomes in runs.items():
        for m in models:
            outs = [o for o in outcomes if o.policy == m.name and o.decisions]
            if not outs:
                continue
            per = sorted(o.decision_seconds / o.decisions * 1000 for o in outs)
            line = (
                f"- {short[m.name]} on {label}: {statistics.median(per):.2f} ms per decision, worst run "
                f"{per[-1]:.2f} ms ({sum(o.decisions for o in outs):,} decisions)"
            )
            if m.agent.mode == "job":
                steps = sorted(o.selector_seconds / o.calls * 1000 for o in outs if o.calls)
                line += (
                    f"; the whole selector {statistics.median(steps):.2f} ms per controller step, worst run "
                    f"{steps[-1]:.2f} ms ({sum(o.calls for o in outs):,} steps)"
                )
            lines.append(line)
    return lines


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _took(seconds: float, cached: int, path: str | None) -> str:
    if not cached:
        return f"{seconds / 60:.1f} min for this run"
    return (
        f"{cached:,} of the runs read from `--cache {Path(path or '').name}` (earlier runs of this command with the "
        f"same settings), the others {seconds / 60:.1f} min for this run"
    )


def _reusable(
    path: Path, agent: Agent, env: rl.AllocationEnv, steps: int, seed: int, about: dict
) -> dict[str, Any] | None:
    """The saved metadata of ``path`` when it holds this agent trained as this run would train it."""
    if not path.exists():
        return None
    meta = rl.read_meta(path)
    saved = meta["env"]
    same = (
        meta["algo"] == agent.algo
        and meta["steps"] == steps
        and meta["seed"] == seed
        and saved["mode"] == env.mode
        and list(saved["arms"]) == list(env.arm_names)
        and saved["window"] == env.window
        and saved["tick"] == env.sim.tick
        and saved["budget"] == env.budget
        and saved["rule"] == env.rule
        and saved["features"] == env.features.to_dict()
        and saved["reward"] == env.reward_weights.to_dict()
        and meta["trained_on"].get("starts") == about["starts"]
        and isinstance(meta.get("seconds"), int | float)
    )
    if not same:
        print(f"{path} was trained otherwise: training it again", file=sys.stderr)
    return meta if same else None


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
    return dataclasses.replace(outcome, policy=short.get(outcome.policy, outcome.policy))


def _verdict(outcomes: list[ev.Outcome], learned: list[str], fixed: list[str], seeds: int) -> list[str]:
    """The best fixed policy in hindsight, and each learned policy against it run by run."""
    jct = ev.summarise(outcomes, "mean_jct")
    best = min((p for p in fixed if p in jct), key=lambda p: jct[p].mean)
    out = [f"Best fixed policy in hindsight (lowest mean JCT here, of {len(fixed)} pairs): `{best}`."]
    by = {(o.policy, o.start, o.seed): o.mean_jct for o in outcomes}
    for name in [*learned, "rolling-horizon", "random", "random-job"]:
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
            f"`{name}` {verdict} it: mean JCT ratio {geo:.3f} (geometric mean over the {len(ratios)} runs, "
            f"windows x {seeds} seeds; median {median:.3f}), lower on {wins} runs, equal on {ties}, higher on "
            f"{len(ratios) - wins - ties}."
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
