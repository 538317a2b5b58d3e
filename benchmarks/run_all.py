"""Regenerate every figure of docs/benchmarks.md: run each benchmark, then fold the tables in.

    python benchmarks/run_all.py            # everything (about five hours on 2 cores)
    python benchmarks/run_all.py --only fgd_protocol,exact_openb
    python benchmarks/run_all.py --fold     # only rebuild docs/benchmarks.md from benchmarks/results/

Each benchmark writes its own table to benchmarks/results/<name>.md with the exact command that produced
it; docs/benchmarks.md is those tables in order, under a short introduction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"

#: (script, results file, section title[, arguments]); in the order of the tracker issues.
BENCHMARKS: list[tuple[str, ...]] = [
    ("bench_io.py", "io.md", "Foundation: reading traces, verifying, memory (issue 2)"),
    ("fgd_protocol.py", "fgd.md", "Heuristics: reproducing the FGD paper, and beating it (issue 3)"),
    (
        "fgd_protocol.py",
        "fgd_lists_rerun.md",
        "Heuristics: FGD and fgd-plus on gpushare100 and multigpu50, rerun (issue 19)",
        "--lists gpushare100,multigpu50 --rules fgd,fgd-plus --heldout= --out benchmarks/results/fgd_lists_rerun.md "
        "--img /tmp/optalloc-fgd-img",
    ),
    ("heuristics_scale.py", "heuristics_scale.md", "Heuristics at scale: 10,000 and 20,000 nodes (issue 14)"),
    (
        "heuristics_scale.py",
        "heuristics_scale_side.md",
        "Heuristics at scale: side by side with the code before issue 14's second round",
        "--problems 10k --methods best-fit,fgd,fgd-plus --repeat 3 --baseline e5a2df4 "
        "--out benchmarks/results/heuristics_scale_side.md",
    ),
    (
        "heuristics_scale.py",
        "heuristics_scale_quiet.md",
        "Heuristics at scale: 10,000 nodes on a quiet machine (issue 14)",
        "--problems 10k --methods best-fit,fgd,fgd-plus --repeat 3 --placer= --budgets= "
        "--out benchmarks/results/heuristics_scale_quiet.md",
    ),
    (
        "heuristics_scale.py",
        "heuristics_scale_placer.md",
        "Heuristics at scale: the online Placer on 10,000 nodes, quiet machine (issue 14)",
        "--problems 10k --methods best-fit --repeat 1 --budgets= --out benchmarks/results/heuristics_scale_placer.md",
    ),
    (
        "heuristics_scale.py",
        "heuristics_scale_20k.md",
        "Heuristics at scale: every rule on 20,000 nodes and 150,000 jobs (issue 14)",
        "--problems 20k --repeat 1 --placer= --budgets= --out benchmarks/results/heuristics_scale_20k.md",
    ),
    (
        "fgd_protocol.py",
        "fgd_order.md",
        "Heuristics: node order (issue 19)",
        "--order-study --lists default,default-cpu-heavy,gpushare100,multigpu50 --rules fgd,fgd-plus --seeds 42 "
        "--heldout=",
    ),
    (
        "fgd_protocol.py",
        "fgd_families.md",
        "Heuristics: fgd-plus against FGD on every family (issue 19)",
        "--families all --seeds 1-3",
    ),
    (
        "fgd_protocol.py",
        "fgd_families_heldout.md",
        "Heuristics: fgd-plus against FGD on every family, held-out seeds (issue 19)",
        "--families all --seeds 4-6 --out benchmarks/results/fgd_families_heldout.md",
    ),
    ("exact_openb.py", "exact_openb.md", "Exact: the whole openb lists within 10 s (issue 4)"),
    ("exact_scaling.py", "exact_scaling.md", "Exact: scaling against naive models (issue 4)"),
    ("exact_batches.py", "exact_batches.md", "Exact: the FGD protocol in batches, and the offline optimum (issue 4)"),
    (
        "exact_batches.py",
        "exact_batches_forecast.md",
        "Exact: how the batch protocol depends on the admission forecast (issue 4)",
        "--lists default --seeds 42 --methods fgd-plus,auto --forecasts 1,1.3,1.6,2,3 --no-offline "
        "--out benchmarks/results/exact_batches_forecast.md",
    ),
    ("bench_adaptive.py", "adaptive.md", "Adaptive loop: step cost and the horizon model (issue 6)"),
    ("sim_gavel.py", "sim_gavel.md", "Simulator: Gavel msr on a heterogeneous cluster (issue 7)", "--processes 2"),
    (
        "sim_openb.py",
        "sim_openb.md",
        "Simulator: openb replayed under load, the adaptive loop with packing admissions (issue 7)",
        "--policy heuristics --policy fcfs+fgd-plus --policy cpsat-packing --policy rolling-horizon-fcfs "
        "--policy rolling-horizon-packing --processes 2",
    ),
    (
        "sim_openb.py",
        "sim_openb_repeat.md",
        "Simulator: openb replayed under load, the packing loop run again (issue 7)",
        "--policy fcfs+fgd --policy rolling-horizon-packing --repeat 2 --processes 2 "
        "--out benchmarks/results/sim_openb_repeat.md",
    ),
    (
        "sim_openb.py",
        "sim_openb_all.md",
        "Simulator: openb replayed under load, every policy (issue 7)",
        "--policy all --policy rolling-horizon-fcfs+fgd --processes 2 --out benchmarks/results/sim_openb_all.md",
    ),
    ("sim_speed.py", "sim_speed.md", "Simulator: speed with heuristic policies (issue 7)"),
    (
        "anytime.py",
        "anytime_openb.md",
        "Anytime engine: the whole openb lists, every budget (issue 14)",
        "--problems default,multigpu50 --methods auto,cpsat,milp-highs,auto/det,first-fit,best-fit,worst-fit,dot-product,"
        "gpu-packing,gpu-clustering,random,fgd,fgd-plus --repeats 3 --out benchmarks/results/anytime_openb.md",
    ),
    (
        "anytime.py",
        "anytime_openb_after.md",
        "Anytime engine: the whole openb lists, auto against the heuristics at 1-10 s, the current code (issue 14)",
        "--problems default,multigpu50 --budgets 1,2,5,10 --methods auto,fgd,fgd-plus,first-fit --repeats 3 "
        "--out benchmarks/results/anytime_openb_after.md",
    ),
    (
        "anytime.py",
        "anytime_10k.md",
        "Anytime engine: 10,000 nodes x 70,000 jobs (issue 14)",
        "--problems 10k --budgets 0.2,0.5,1,2,5,10,30,60 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus "
        "--repeats 3 --out benchmarks/results/anytime_10k.md",
    ),
    (
        "anytime.py",
        "anytime_10k_exact.md",
        "Anytime engine: 10,000 nodes x 70,000 jobs, the exact methods on the current code (issue 14)",
        "--problems 10k --budgets 0.2,0.5,1,2,5,10,30,60 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus "
        "--repeats 3 --out benchmarks/results/anytime_10k_exact.md",
    ),
    (
        "anytime.py",
        "anytime_10k_after.md",
        "Anytime engine: 10,000 nodes x 70,000 jobs, the current code (issue 14)",
        "--problems 10k --budgets 5,10,30,60 --methods auto,best-fit,fgd,fgd-plus --repeats 3 "
        "--out benchmarks/results/anytime_10k_after.md",
    ),
    (
        "anytime.py",
        "anytime_20k.md",
        "Anytime engine: 20,000 nodes x 150,000 jobs (issue 14)",
        "--problems 20k --budgets 0.2,0.5,1,2,5,10,30 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus --repeats 1 "
        "--out benchmarks/results/anytime_20k.md",
    ),
    (
        "anytime.py",
        "anytime_det_scale.md",
        "Anytime engine: deterministic mode at 10,000 and 20,000 nodes (issue 14)",
        "--problems 10k,20k --budgets 0.2,0.5,1,2,5,10,30 --methods auto/det,cpsat/det --repeats 1 "
        "--out benchmarks/results/anytime_det_scale.md",
    ),
    (
        "anytime.py",
        "anytime_small.md",
        "Anytime engine: the smallest budgets at 10,000 and 20,000 nodes (issue 14)",
        "--problems 10k,20k --budgets 0.2,0.5 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus --repeats 3 "
        "--out benchmarks/results/anytime_small.md",
    ),
    (
        "pop_scaling.py",
        "pop_scaling.md",
        "Scale-out: POP against the whole problem, 1k to 50k nodes (issue 18)",
        "--sizes 1000,10000,50000 --out benchmarks/results/pop_scaling.md",
    ),
    (
        "pop_scaling.py",
        "pop_scaling_more.md",
        "Scale-out: POP against the whole problem at 5k and 20k nodes (issue 18)",
        "--sizes 5000,20000 --out benchmarks/results/pop_scaling_more.md",
    ),
    (
        "service_load.py",
        "service_load.md",
        "The allocation service under load (issue 16)",
        "--nodes 64 --submits 5000 --clients 32 --settle --out benchmarks/results/service_load_runs.md",
    ),
    (
        "rl_eval.py",
        "rl_eval.md",
        "Learned scheduler: DQN and PPO against every fixed policy (issue 15)",
        "--reuse --processes 2 --screen openb=8",
    ),
    (
        "timeshare_gavel.py",
        "timeshare_gavel.md",
        "Time sharing across GPU types: the Gavel msr trace on 32 V100 + 32 P100 + 32 K80 (issue 17)",
        "--processes 2",
    ),
    (
        "timeshare_gavel.py",
        "timeshare_gavel_small.md",
        "Time sharing across GPU types: a smaller cluster where the queue builds up (issue 17)",
        "--cluster v100=16,p100=16,k80=16 --jobs 400 --processes 2 --out benchmarks/results/timeshare_gavel_small.md",
    ),
    (
        "timeshare_gavel.py",
        "timeshare_gavel_heldout.md",
        "Time sharing across GPU types: the smaller cluster on a held-out window of the trace (issue 17)",
        "--cluster v100=16,p100=16,k80=16 --skip 600 --jobs 400 --policy max-min-fairness --policy max-sum-throughput "
        "--policy srtf --processes 2 "
        "--out benchmarks/results/timeshare_gavel_heldout.md",
    ),
    (
        "timeshare_scale.py",
        "timeshare_scale.md",
        "Time sharing across GPU types: solve time at 2,048 jobs on 1,536 GPUs, whole and POP (issues 17, 18)",
        "--executor local,ray,serial",
    ),
    (
        "timeshare_scale.py",
        "timeshare_scale_heldout.md",
        "Time sharing across GPU types: POP on other synthetic job sets (issue 18)",
        "--seed 7 --policy max-min-fairness --repeats 2 --parts 8 --out benchmarks/results/timeshare_scale_heldout.md",
    ),
    (
        "sim_sweep_ray.py",
        "sim_sweep_ray.md",
        "Sweeps: the Gavel evaluation serially, in a local pool and on Ray (issue 18)",
    ),
]

INTRO = """# Benchmarks

Every figure below is produced by a script in `benchmarks/`; each section starts with the exact command.
`python benchmarks/run_all.py` reruns them all and rebuilds this page (`--fold` only rebuilds the page).
The machine: 2 cores (x86_64), 24 GiB, Python 3.11, shared with other work — timings are noisy, so
they are medians, and comparisons are ratios measured side by side in one run. The public traces are
read from `../shared/data/traces` (see its README); they are not part of the repository.

## The targets, at a glance

What the tracker issues ask for, and where the runs below stand (the sections give the detail).

| issue | target | measured | met |
|---|---|---|---|
| 2 | read the openb default list and verify an allocation of it, each well under 1 s | 277 ms and 48 ms | yes |
| 3 | six upstream rules within about 1 point of the FGD paper, at 130% | all within 0.23 points | yes |
| 3 | a rule of our own >= 96.0% on default at 130% (upstream FGD 95.39%) | fgd-plus 96.21% (held-out seeds 96.19%) | yes |
| 3 | the whole protocol under 5 s per run for every rule | at most 4.3 s (fgd-plus, gpushare100) | yes |
| 4 | gap to the LP bound <= 0.5% within 10 s on the whole default and multigpu50 lists | default 0.071% at 10 s; multigpu50 0.000% at 5 s (`auto`, medians of 3, bdb52be; 0.22% and 0.01% when issue 4 closed) | yes |
| 4 | >= 100x faster than naive models at equal gap, or the naive models not finishing | ours to <= 1% in 5.9 / 8.8 / 27.3 s at 1k / 10k / 50k jobs; at 1k naive CP-SAT ends its 120 s limit at 0.69% (about 21x slower), CBC at 4.2%; at 10k and 50k the naive models (9.8 M and 244 M binaries) are not built | 1k: no (21x); 10k, 50k: yes (naive not finishing) |
| 4 | FGD protocol in batches of 1%: >= 97.5% on default at 130% | 97.96% (auto, admission forecast 2), 98.21% (fgd-plus, 2); 96.30% without admission control | yes, with admission control |
| 7 | rolling horizon average JCT <= 0.7x FCFS + best-fit on the Gavel msr trace | 0.45x | yes |
| 7 | >= 1 point more GPU allocation than the best heuristic on the loaded openb replay | rolling-horizon-packing 86.31% vs the best of 11 heuristics (fcfs+fgd) 84.82%: +1.49 points; two more runs 86.09% and 86.32% (median of the three 86.31%, lowest +1.27) (rolling-horizon-fcfs +0.58, cpsat-packing +0.03); it finishes fewer pods by the last arrival (79.8% vs 82.9%) | yes |
| 7 | simulation speed >= 10,000 events/s with heuristic policies | direct engine 10,902 to 55,470 events/s (openb with FGD the slowest) | yes |
| 14 | on openb_like(10k nodes, 70k jobs): best-fit <= 2 s, fgd <= 10 s, fgd-plus <= 15 s (whole `solve`, with `verify`) | quiet machine, fresh process each, medians of 3: best-fit **1.86 s**, fgd **7.93 s**, fgd-plus **9.68 s** (loaded runs before: 2.24 / 10.68 / 12.26 s) | yes (on a quiet machine) |
| 14 | online Placer <= 2 ms per decision at p99 on 10k nodes; peak memory <= 2 GiB | quiet machine: p99 **0.14 ms** (best-fit), **0.58 ms** (fgd), **0.60 ms** (fgd-plus) over 70,000 pods with departures (under load: 4.3 ms for fgd); peak 194-399 MiB on 10k, 362-810 MiB on 20k x 150k | yes |
| 14 | budgets: `solve(p, rule, time_limit=T)` within T + max(0.1 s, 5% of T), T = 0.2-5 s, on 10k x 70k and 20k x 150k | best-fit, fgd, fgd-plus: every budget kept on both (largest overrun +0.08 s at T = 0.2 s on 150k jobs); undecided jobs listed with reason `time limit` | yes |
| 14 | budgets kept: wall <= T + max(0.1 s, 5% T) for every method, budget and problem, `deterministic=True` too; nothing runs after `solve` returns | openb default and multigpu50, 13 methods x 7 budgets x 3: **546 of 546** kept in each of nine runs (f96b79f, a30edd2, 12f51cd, 1364d01; 26c2c23, 76b5662, bdb52be, 5934789, a518f7b: largest overrun +0.067 s), 545 of 546 on ece6c33 (one `auto` run at 2 s: 2.102 s; kept back since a044a82); 10k x 70k and 20k x 150k at 0.2 and 0.5 s, six methods x 3 (`anytime_small`, a518f7b and d37d1ab): **72 of 72** in both (20k at 0.2 s: 0.11-0.21 s; before b46b31d 0.31-0.37 s, an answer deciding none of 150,000 jobs costing 0.16 s to build and verify, now 0.10 s: slotted entries, no re-check of kept entries); 20k x 150k, 6 methods x 7 budgets (`anytime_20k`, a518f7b and d37d1ab): **42 of 42** in both; 10k x 70k at 5-60 s, `auto` and the heuristics (`anytime_10k_after`, d37d1ab): **48 of 48**; `deterministic=True` at 10k and 20k, `auto/det` and `cpsat/det` x 7 budgets (`anytime_det_scale`, 9f6ff83): **28 of 28**; 10k x 70k, `auto`, `cpsat`, `milp-highs` x 8 budgets x 3 (`anytime_10k_exact`, 9f6ff83, stopped after 68 of 144 runs): **68 of 68**; 10k x 70k at 10-60 s: 36 of 36 (53c9498, bdb52be) and 48 of 48 at 5-60 s (5934789); no thread or child process left behind in any run. Outside the benchmark: repeated `auto` runs at 2 s on the default list took 2.10-2.15 s in 6 of 68 until db49683 (the polish child's packings carried a 2.1 MB state copy); 0 of 20 since | yes |
| 14 | `auto` >= the best heuristic that finished in the same budget, every budget | a518f7b (`anytime_openb`, a fast machine: fgd 0.46-0.47 s, fgd-plus whole 0.52-0.55 s): **every budget on both openb lists**; default at 0.5 s **+0.128%** over fgd, which finishes inside 0.5 s on such a machine (5934789: -0.189%; the tail is now sized on `strong_fill_alone` 0.95 when the program is not expected to run: db7d570), at 1 s +0.050% (fgd-plus whole in 3 of 3), +0.58 to +0.70% from 2 s; multigpu50 +4.5 to +6.2% from 0.5 s; bdb52be, on a machine where fgd-plus whole took 1.0-1.2 s: every budget; held-out openb_like (1,213 x 8,000 seeds 1-2, 3,000 x 20,000 seed 3) and gpushare100 at 0.5-2 s: >= in every case (53c9498); 10k: +3.48% at 5 s, +0.88% at 10 s, +0.94% at 30 s, +1.00% at 60 s (d37d1ab); 20k: +2.01% at 10 s, +1.71% at 30 s (d37d1ab). At 0.2 s on the default list `auto` equals first-fit | yes |
| 14 | default list: >= fgd-plus at 1 s, >= 96.0% at 2 s, gap <= 0.1% at 10 s; multigpu50 gap <= 0.05% at 5 s | medians of 3, a518f7b (`anytime_openb`): 1 s **95.91%**, fgd-plus whole in 3 of 3 runs (the tail's child times fgd-plus on the first 3% of the queue and goes on to the end when it can: `allocate(probe_jobs=)`), **+0.050%** over fgd-plus run whole; 2 s **96.43%**; default gap at 10 s **0.055%**; multigpu50 at 5 s **0.000%** (`optimal` in every run); the same on db49683 (`anytime_openb_after`: +0.057%, 96.43%, 0.055%, 0.000%) | yes, all four on this machine; at 1 s it depends on fgd-plus whole fitting in the child's time (about 0.75 s of the second): where it takes 1.0-1.2 s alone (bdb52be's machine) `auto` answers first-fit with its tail, above fgd |
| 14 | openb_like(10k nodes, 70k jobs): `auto` gap <= 1% at 60 s | d37d1ab (`anytime_10k_after`): **0.21% at 10 s, 0.15% at 30 s, 0.09% at 60 s** (97.02%; fgd-plus 96.07% in 5.9-6.4 s); at 5 s **0.80%** by median (96.33%, the program's first answer in 2 of 3 runs, first-fit with fgd-plus's tail, 95.07%, in the third; 5934789: 4.92%, the tail in 3 of 3): the pace's yardstick now grows with the nodes (`first_rule_time`: an idle machine read 1.3 at 10,000 nodes, and the program's forecast missed the time left). 9f6ff83 (`anytime_10k_exact`, auto/cpsat/milp-highs): 0.21-0.22 / 0.15 / 0.09-0.10%. 20k x 150k: **0.56% at 30 s** (97.76%; d37d1ab); at 10 s `auto` 94.92% where `cpsat` and `auto/det` reach 97.59% (docs/anytime.md: the tail's child started as insurance slows first-fit, and the program then misses its forecast) | yes at 60 s |
| 14 | a bound at every budget >= 0.5 s (`auto`, `cpsat`, `milp*`); honest status (conformance property) | every run at >= 0.5 s has a gap on the openb lists, 10k and 20k (a518f7b: `anytime_openb`, `anytime_small`, `anytime_20k`; d37d1ab: `anytime_10k_after`, `anytime_small`, `anytime_20k`; `anytime_det_scale` in deterministic mode). Before 88d7fd7, 20k x 150k at 0.5 s had none: the early bound was skipped when the time left after the verification's reserve (0.36 s) was under `early_bound_from`. It now runs by its forecast, and the jobs' total value stands in when the pooled bound's 0.17-0.24 s would take over a third of the time left (gap 98.6% there). `optimal` only at the bound, a gap limit is `feasible` (tests/test_conformance.py) | yes |
| 16 | service: >= 500 submits/s while the loop re-solves; submit p99 <= 50 ms; re-solves within budget (1,000 nodes x 10,000 jobs too) | loop in its own process, quiet machine: p99 **9.7 ms** at an offered 500 submits/s (306 ms with the loop in a thread, same minute); 1,239 and 1,600 submits/s closed loop (64 and 1,000 nodes); **0 re-solves over budget** in 141 (1,000 x 10,000: longest 1.70 s of 2 s); kill -9: 0 of 2,531 accepted submits lost | yes |
| 18 | POP at 50k nodes x 400k jobs within its budget, within 1% of the single-process answer (or better) | at 60 s: POP-4/8/16 with `auto` inside return after 58.6-59.9 s and allocate 97.2-98.6% of the GPUs, +2.6 to +4.0 points above the whole problem in one process (94.61%); 10k: on par (-0.01 to +0.09); 1k: whole ahead by 0.2 | yes |
| 15 | a learned policy matches or beats the best fixed heuristic on held-out windows, on the metric its reward targets (mean JCT) | Gavel held out, 6 windows x 5 seeds, best of all 63 fixed pairs in hindsight (sjf+worst-fit) 55.5 h; DQN over heuristic arms 57.5 h (1.039x run by run, median 1.017, lower on 11 of 30), DQN with the exact arm 75.0 h, PPO 79.3 h, job-choice DQN 82.4 h (1.44x; random job 1.48x); openb, never seen, 5 x 5 (63 pairs screened on seed 0, the 8 best on 5 seeds): 2.89 / 2.95 / 3.23 / 3.37 h against sjf+gpu-packing 2.80 h; rolling-horizon 54.1 h and 2.77 h | no: they lose (docs/rl.md says why) |
| 15 | training the benchmark model within 20 min on 2 cores; inference <= 5 ms per decision | training 2.5-8.3 min (job-choice DQN 6.9 min, shared machine); 0.5-1.3 ms per decision measured alone, medians 1.4-2.7 ms inside the benchmark's runs (2 processes, nice 19, loaded) | yes |
| 18 | sweeps: the Gavel evaluation through Ray at least as fast as the local pool, and the same results | 10 heuristic policies on the Gavel trace's first 200 jobs, 2 workers each, machine shared (load 10-13): Ray 85.1 s, local pool 84.1 s, serial 99.5 s (medians of 3); Ray faster in 2 of 3 paired repeats and on the held-out sweep (69.5 vs 71.9 s); identical outcomes on every run | same results: yes; speed: equal within noise (median 1% slower) |
| 17 | aware max-min fairness >= 1.5x better average JCT than the agnostic one where the queue builds up (Gavel msr, 32 V100 + 32 P100 + 32 K80) | 5.70 against 8.74 days: 1.53x (every aware policy but min-makespan ahead of its twin; 1.22-1.64x); smaller cluster 16+16+16, first 400 jobs: 1.34x; held-out window (jobs 600-999): 1.26x | yes on the cluster the issue names; no on the smaller one |
| 17 | the best time-share policy better than rolling-horizon's 0.45x FCFS + best-fit on the same trace | srtf 0.33x (max-sum-throughput 0.42x); 0.38x and 0.40x on the smaller cluster and the held-out window (rolling-horizon 0.52x and 0.66x there) | yes |
| 17 | solve time per round at 2,048 jobs on 1,536 GPUs of 3 types, recorded | max-min fairness 1.14 s whole (re-solve), POP-8 0.45 s on a local pool (loss 0.10%, worst 0.14%; held-out set 0.05% / 0.10%); finish-time fairness 0.37 s (Clarabel), the others <= 0.44 s | recorded |
| 19 | spread <= 0.3 points over node orders (default, gpushare100, multigpu50, CPU-heavy default) | 0.00 on all four (name-hash ties); with index ties up to 1.36 | yes |
| 19 | fgd-plus >= FGD on every generator family and list | ahead on the three lists and on 4 of 5 families (seeds 1-3 and held-out 4-6); equal on the CPU-bound cpu-heavy family (fgd-plus places as FGD when the mix asks more of the CPU than of the GPUs) | yes |
"""


def fold() -> None:
    parts = [INTRO]
    for _script, result, title, *_ in BENCHMARKS:
        path = HERE / "results" / result
        if not path.exists():
            parts.append(f"## {title}\n\nNot measured yet: run `python benchmarks/run_all.py --only {result[:-3]}`.\n")
            continue
        body = path.read_text().strip().splitlines()
        if body and body[0].startswith("# "):
            body = body[1:]
        text = "\n".join(body).replace("](../../docs/", "](")
        text = "\n".join(("#" + line) if line.startswith("## ") else line for line in text.splitlines())
        parts.append(f"## {title}\n{text}\n")
    DOCS.write_text("\n".join(parts))
    print(f"wrote {DOCS}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated script or results names (without .py / .md)")
    ap.add_argument("--fold", action="store_true", help="only rebuild docs/benchmarks.md")
    args = ap.parse_args()
    if not args.fold:
        wanted = {w for w in args.only.split(",") if w}
        for script, result, _, *extra in BENCHMARKS:
            if wanted and script[:-3] not in wanted and result[:-3] not in wanted:
                continue
            options = extra[0].split() if extra else []
            print(f"== {script} {' '.join(options)}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), *options], check=True, cwd=HERE.parent)
    fold()


if __name__ == "__main__":
    main()
