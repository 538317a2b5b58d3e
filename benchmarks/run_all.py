"""Regenerate every figure of docs/benchmarks.md: run each benchmark, then fold the tables in.

    python benchmarks/run_all.py            # everything (about an hour on 2 cores)
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

#: (script, results file, section title); in the order of the tracker issues.
BENCHMARKS = [
    ("bench_io.py", "io.md", "Foundation: reading traces, verifying, memory (issue 2)"),
    ("fgd_protocol.py", "fgd.md", "Heuristics: reproducing the FGD paper, and beating it (issue 3)"),
    ("exact_openb.py", "exact_openb.md", "Exact: the whole openb lists within 10 s (issue 4)"),
    ("exact_scaling.py", "exact_scaling.md", "Exact: scaling against naive models (issue 4)"),
    ("exact_batches.py", "exact_batches.md", "Exact: the FGD protocol in batches, and the offline optimum (issue 4)"),
    ("bench_adaptive.py", "adaptive.md", "Adaptive loop: step cost and the horizon model (issue 6)"),
    ("sim_gavel.py", "sim_gavel.md", "Simulator: Gavel msr on a heterogeneous cluster (issue 7)"),
    ("sim_openb.py", "sim_openb.md", "Simulator: openb replayed under load (issue 7)"),
    ("sim_speed.py", "sim_speed.md", "Simulator: speed with heuristic policies (issue 7)"),
]

INTRO = """# Benchmarks

Every figure below is produced by a script in `benchmarks/`; each section starts with the exact command.
`python benchmarks/run_all.py` reruns them all and rebuilds this page (`--fold` only rebuilds the page).
The machine: 2 cores (x86_64), 24 GiB, Python 3.11, shared with other work — timings are noisy, so
they are medians, and comparisons are ratios measured side by side in one run. The public traces are
read from `../shared/data/traces` (see its README); they are not part of the repository.
"""


def fold() -> None:
    parts = [INTRO]
    for script, result, title in BENCHMARKS:
        path = HERE / "results" / result
        if not path.exists():
            parts.append(f"## {title}\n\nNot measured yet: run `python benchmarks/run_all.py --only {script[:-3]}`.\n")
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
    ap.add_argument("--only", default="", help="comma-separated script names (without .py)")
    ap.add_argument("--fold", action="store_true", help="only rebuild docs/benchmarks.md")
    args = ap.parse_args()
    if not args.fold:
        wanted = {w for w in args.only.split(",") if w}
        for script, _, _ in BENCHMARKS:
            if wanted and script[:-3] not in wanted:
                continue
            print(f"== {script}", flush=True)
            subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE.parent)
    fold()


if __name__ == "__main__":
    main()
