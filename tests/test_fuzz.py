"""Fuzz corpus: hypothesis over problem files, CSV rows, trace rows and command-line arguments.

For every command, whatever the input: the exit status is 0, 1 or 2; stderr never holds a traceback;
no input file changes; memory stays bounded (the process's peak resident size grows by less than
``MEMORY_MB`` over a whole test) and each run ends within ``SECONDS``. Commands run in-process through
``optalloc.cli.main`` (an exception other than the exit is a failure), on tiny inputs, so that a
test takes seconds; ``--hypothesis-profile=thorough`` runs 20 times more examples.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optalloc.cli import app, main

EXIT_STATUSES = {0, 1, 2}
MEMORY_MB = 600
SECONDS = 60.0
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
#: For the tests that run several commands per example: half the profile's examples (the others take
#: one or two cheap commands each), so that the corpus adds well under a minute to the suite.
HEAVY = settings(FUZZ, max_examples=max(1, settings.default.max_examples // 2))


# The harness -------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


class Harness:
    """Inputs live in ``in/`` (never changed by any command); commands run with ``out/`` as the
    working folder. ``run`` checks the exit status, stderr, the inputs and the time of one command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "in"
        self.out = root / "out"
        self.inputs.mkdir(exist_ok=True)
        self.out.mkdir(exist_ok=True)
        self.baseline = peak_rss_mb()
        with socket.socket() as s:  # a loopback port nothing listens on: monitoring is stale at once
            s.bind(("127.0.0.1", 0))
            self.closed_url = f"http://127.0.0.1:{s.getsockname()[1]}"

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.inputs / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def run(self, *args: str) -> tuple[int, str, str]:
        before = digest(self.inputs)
        stdout, stderr = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        with (
            contextlib.chdir(self.out),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            pytest.raises(SystemExit) as done,
        ):
            main(list(args))
        elapsed = time.perf_counter() - started
        code = done.value.code if isinstance(done.value.code, int) else 0
        err = stderr.getvalue()
        assert code in EXIT_STATUSES, (args, code, err)
        assert "Traceback" not in err, (args, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert lines and lines[-1].startswith("error: "), (args, err)
        assert digest(self.inputs) == before, ("an input changed", args)
        assert elapsed < SECONDS, (args, elapsed)
        assert peak_rss_mb() - self.baseline < MEMORY_MB, (args, peak_rss_mb() - self.baseline)
        return code, stdout.getvalue(), err


@pytest.fixture
def harness(tmp_path_factory) -> Iterator[Harness]:
    yield Harness(tmp_path_factory.mktemp("fuzz"))


# Values: mostly well-formed, often hostile --------------------------------------------------------
HOSTILE_TEXT = [
    "",
    " ",
    "a\nb",
    "red\x1b[31m",
    "nul\x00",
    "\u202egnp.exe",
    "x" * 300,
    "café",
    "名前",
    "500m",
    "16Gi",
    "1.5Ti",
    "1e999999Ei",
    "-1Gi",
    "1e30",
    "2.5",
    "abc",
    "A100|T4",
    "pack",
    "spread",
    "single-node",
    "nan",
    "inf",
    "9" * 5000,
]
HOSTILE_NUMBERS = [0, 1, -1, 8, 999, 1000, 1001, 2**31, 2**40, 2**40 + 1, 2**63, 2**70, 10**4000]
HOSTILE_FLOATS = [0.5, -0.0, 1e30, 1e308, float("inf"), float("-inf"), float("nan")]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 100),
    st.sampled_from(HOSTILE_NUMBERS),
    st.sampled_from(HOSTILE_FLOATS),
    st.floats(),
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=12),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def node_docs(draw: Any, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": f"n{i}"}
    for key, valid in (
        ("cpu", st.integers(0, 64_000) | st.sampled_from(["8", "500m", "64"])),
        ("memory", st.integers(0, 262_144) | st.sampled_from(["16Gi", "512Mi"])),
        ("gpus", st.integers(0, 8)),
        ("gpu_model", st.sampled_from(["A100", "T4"])),
        ("gpu_memory", st.integers(0, 81_920)),
        ("labels", st.dictionaries(st.sampled_from(["zone", "rack"]), st.sampled_from(["a", "b"]), max_size=2)),
    ):
        if draw(st.booleans()):
            doc[key] = draw(valid)
    return doc


@st.composite
def job_docs(draw: Any, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": f"j{i}", "duration": draw(st.floats(1, 50_000))}
    gpu = draw(st.sampled_from(["gpus", "gpu_milli", None]))
    if gpu is not None:
        doc[gpu] = draw(st.integers(1, 4) if gpu == "gpus" else st.integers(1, 999))
    for key, valid in (
        ("cpu", st.integers(0, 16_000)),
        ("memory", st.integers(0, 65_536) | st.just("4Gi")),
        ("gpu_memory", st.integers(0, 40_000)),
        ("replicas", st.integers(1, 4)),
        ("gpu_models", st.sampled_from([["A100"], "T4", "A100|T4", []])),
        ("node_selector", st.dictionaries(st.just("zone"), st.sampled_from(["a", "b"]), max_size=1)),
        ("priority", st.integers(-5, 5)),
        ("arrival", st.floats(0, 10_000)),
        ("placement", st.sampled_from(["any", "pack", "spread", "single-node"])),
        ("preemptible", st.booleans()),
    ):
        if draw(st.booleans()):
            doc[key] = draw(valid)
    if "replicas" in doc and draw(st.booleans()):
        doc["min_replicas"] = draw(st.integers(1, doc["replicas"]))
    return doc


@st.composite
def allocation_docs(draw: Any, jobs: int, nodes: int) -> dict[str, Any]:
    placements = [
        {
            "job": f"j{draw(st.integers(0, max(jobs - 1, 0)))}",
            "replica": draw(st.integers(0, 3)),
            "node": f"n{draw(st.integers(0, max(nodes - 1, 0)))}",
            "gpus": draw(st.lists(st.integers(0, 9), max_size=3)),
            "gpu_milli": draw(st.sampled_from([0, 250, 1000])),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    unplaced = [
        {
            "job": f"j{draw(st.integers(0, max(jobs - 1, 0)))}",
            "reason": draw(st.sampled_from(["fits no node", "not selected"])),
        }
        for _ in range(draw(st.integers(0, 2)))
    ]
    doc: dict[str, Any] = {"placements": placements, "unplaced": unplaced}
    if draw(st.booleans()):
        doc["summary"] = {"method": "x", "status": draw(st.sampled_from(["feasible", "optimal"]))}
    return draw(mutated(doc))


@st.composite
def problem_docs(draw: Any) -> dict[str, Any]:
    nodes = [draw(node_docs(i)) for i in range(draw(st.integers(0, 4)))]
    jobs = [draw(job_docs(i)) for i in range(draw(st.integers(0, 5)))]
    doc: dict[str, Any] = {"version": 1, "nodes": nodes, "jobs": jobs}
    if draw(st.integers(0, 3)) == 0:
        doc["current"] = draw(allocation_docs(len(jobs), len(nodes)))
    if draw(st.integers(0, 5)) == 0:
        doc["weights"] = {"migration": draw(st.integers(0, 500))}
    return draw(mutated(doc))


@st.composite
def mutated(draw: Any, doc: Any) -> Any:
    """``doc`` with none (most often), one or a few values replaced, keys added or removed anywhere."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "add", "remove"]))
        if not path:
            doc = draw(anything) if action == "replace" else doc
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if action == "replace":
            parent[path[-1]] = draw(anything)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["name", "cpu", "gpus", "bogus", ""]) | st.text(max_size=6))] = draw(anything)
        elif action == "remove":
            del parent[path[-1]]
    return doc


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*path, key))


@st.composite
def encoded(draw: Any, doc: Any, suffix: str) -> bytes:
    """``doc`` as the bytes of a JSON or YAML file, sometimes damaged or in another encoding."""
    text = json.dumps(doc, allow_nan=True) if suffix == ".json" else yaml.safe_dump(doc, allow_unicode=True)
    damage = draw(st.sampled_from(["none"] * 3 + ["truncate", "bytes", "latin-1", "utf-16", "nest", "duplicate"]))
    data = text.encode("utf-8", "surrogatepass")
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif damage == "latin-1":
        data = text.encode("latin-1", "replace") + "é".encode("latin-1")
    elif damage == "utf-16":
        data = text.encode("utf-16", "surrogatepass")
    elif damage == "nest":
        depth = draw(st.sampled_from([33, 999, 5000, 100_000]))
        data = (("[" * depth) + ("]" * depth)).encode() if suffix == ".json" else ("- " * depth + "x\n").encode()
    elif damage == "duplicate" and suffix == ".json" and text.startswith("{"):
        data = ('{"nodes": [], ' + text[1:]).encode("utf-8", "surrogatepass")
    return data


# Problem files, through every command that reads one --------------------------------------------------
@HEAVY
@given(data=st.data(), suffix=st.sampled_from([".json", ".yaml"]))
@pytest.mark.slow
def test_fuzz_problem_files_through_plan_verify_fit_and_watch(harness, data, suffix):
    doc = data.draw(problem_docs())
    problem = harness.write("problem" + suffix, data.draw(encoded(doc, suffix)))
    code, out, _ = harness.run("plan", str(problem), "--method", "best-fit", "--json")
    if code == 0:
        allocation = harness.write("allocation.json", out)
        assert harness.run("verify", str(problem), str(allocation))[0] in (0, 1)
    fuzzed = harness.write("fuzzed.json", data.draw(encoded(data.draw(allocation_docs(5, 4)), ".json")))
    harness.run("verify", str(problem), str(fuzzed))
    harness.run("plan", str(problem), "--method", "best-fit", "--previous", str(fuzzed), "--out", "a.json", "--force")
    harness.run("fit", str(problem), "--like", "n0", "--max-nodes", "16")
    harness.run("watch", str(problem), "--once", "--prometheus", harness.closed_url, "--method", "best-fit")


@HEAVY
@given(data=st.data())
def test_fuzz_problem_files_through_exact_engines_and_the_simulator(harness, data):
    problem = harness.write("problem.json", data.draw(encoded(data.draw(problem_docs()), ".json")))
    harness.run("plan", str(problem), "--method", data.draw(st.sampled_from(["cpsat", "auto"])), "--time-limit", "0.5")
    harness.run(
        "simulate",
        "--trace",
        str(problem),
        "--policy",
        "fcfs+best-fit",
        "--quiet",
        "--no-plots",
        "--out",
        "sim",
        "--force",
    )


# CSV rows ------------------------------------------------------------------------------------------
CELLS = st.one_of(
    st.sampled_from(
        ["", "0", "1", "8", "1000", "500m", "16Gi", "2.5", "1e30", "-1", "true", "no", "A100|T4", "zone=a;rack=1"]
    ),
    st.sampled_from([str(n) for n in HOSTILE_NUMBERS[:-1]] + HOSTILE_TEXT),
    st.text(max_size=10),
)
NODE_COLUMNS = ["name", "cpu", "memory", "gpus", "gpu_model", "gpu_memory", "labels"]
JOB_COLUMNS = ["name", "cpu", "memory", "gpus", "gpu_milli", "replicas", "min_replicas", "gpu_models", "priority"]


@st.composite
def csv_files(draw: Any, columns: list[str]) -> bytes:
    header = ["name", *draw(st.lists(st.sampled_from(columns[1:]), unique=True, max_size=len(columns) - 1))]
    if draw(st.integers(0, 9)) == 0:
        header.append(draw(st.sampled_from(["gpu", "bogus", "name", ""])))
    rows = [
        [f"r{i}" if draw(st.booleans()) else draw(CELLS)] + [draw(CELLS) for _ in header[1:]]
        for i in range(draw(st.integers(0, 5)))
    ]
    if draw(st.integers(0, 9)) == 0 and rows:
        rows[0] = rows[0][:-1]  # a short row
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    text = buffer.getvalue()
    return text.encode("utf-8", "surrogatepass") if draw(st.integers(0, 9)) else text.encode("utf-16", "surrogatepass")


@FUZZ
@given(nodes=csv_files(NODE_COLUMNS), jobs=csv_files(JOB_COLUMNS), suffix=st.sampled_from([".json", ".yaml"]))
def test_fuzz_csv_rows_through_import_and_plan(harness, nodes, jobs, suffix):
    n, j = harness.write("nodes.csv", nodes), harness.write("jobs.csv", jobs)
    code, _, _ = harness.run("import", "csv", "--nodes", str(n), "--jobs", str(j), "--out", "p" + suffix, "--force")
    if code == 0:
        assert harness.run("plan", "p" + suffix, "--method", "best-fit")[0] == 0


# Trace rows ----------------------------------------------------------------------------------------
JOB_TYPES = ["ResNet-18 (batch size 32)", "LM (batch size 20)", "A3C", "", "x\ty"]
THROUGHPUTS = json.dumps(
    {w: {f"('{t}', {k})": {"null": 2.0} for t in JOB_TYPES[:3] for k in (1, 2, 4)} for w in ("v100", "p100", "k80")}
)


@st.composite
def gavel_rows(draw: Any) -> bytes:
    width = draw(st.sampled_from([7, 7, 10, 10, 6]))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        fields = [draw(st.sampled_from(JOB_TYPES) | CELLS), "cmd", "--n", "True"]
        fields += [draw(st.sampled_from(["100", "1", "0"]) | CELLS) for _ in range(width - 4)]
        rows.append("\t".join(fields[:width]))
    return "\n".join(rows).encode("utf-8", "surrogatepass")


POD_COLUMNS = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "creation_time", "deletion_time"]


@st.composite
def openb_pods(draw: Any) -> bytes:
    rows = [POD_COLUMNS]
    for i in range(draw(st.integers(0, 5))):
        rows.append(
            [
                f"p{i}",
                draw(st.sampled_from(["1000", "0"]) | CELLS),
                draw(st.sampled_from(["1024"]) | CELLS),
                draw(st.sampled_from(["0", "1", "2"]) | CELLS),
                draw(st.sampled_from(["0", "500", "1000"]) | CELLS),
                draw(st.sampled_from(["", "T4", "V100"]) | CELLS),
                draw(st.sampled_from(["10000000", "0"]) | CELLS),
                draw(st.sampled_from(["10000600", ""]) | CELLS),
            ]
        )
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8", "surrogatepass")


@HEAVY
@given(trace=gavel_rows(), pods=openb_pods(), cluster=st.sampled_from(["v100=8", "v100=4,k80=4", "a100=8", "v100=0"]))
@pytest.mark.slow
def test_fuzz_trace_rows_through_import_and_simulate(harness, trace, pods, cluster):
    rates = harness.write("simulation_throughputs.json", THROUGHPUTS)
    gavel = harness.write("jobs.trace", trace)
    harness.run(
        "import", "gavel", str(gavel), "--throughputs", str(rates), "--cluster", cluster, "--out", "g.json", "--force"
    )
    harness.run(
        "simulate", "--trace", str(gavel), "--cluster", cluster, "--policy", "fcfs+best-fit", "--quiet", "--no-plots",
        "--out", "sim-gavel", "--force", "--tick", "600",
    )  # fmt: skip
    nodes = harness.write("openb_node_list_all_node.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\n")
    openb = harness.write("pods.csv", pods)
    harness.run("import", "openb", "--nodes", str(nodes), "--pods", str(openb), "--out", "o.json", "--force")
    harness.run(
        "simulate", "--trace", str(openb), "--cluster", "4", "--policy", "fcfs+best-fit", "--quiet", "--no-plots",
        "--out", "sim-openb", "--force",
    )  # fmt: skip


# Command-line arguments ------------------------------------------------------------------------------
def _commands() -> dict[str, Any]:
    """Every command of the app with its parameters (typer's click commands, read by attribute: typer
    vendors its click)."""
    group = typer.main.get_command(app)
    out: dict[str, Any] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            out.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            out[name] = command
    return out


COMMANDS = _commands()
#: Arguments appended last (they win): keep every run on loopback, short, and away from the demo's workload.
SAFETY = {
    "watch": ["--once", "--exporter-host", "127.0.0.1", "--timeout", "0.5"],
    "plan": ["--time-limit", "0.5"],
    "fit": ["--time-limit", "0.5", "--max-nodes", "64"],
    "simulate": ["--quiet", "--no-plots", "--budget", "0.2"],
    "demo": ["--time-limit", "0.3"],
}
NUMBERS = st.sampled_from(
    ["0", "1", "-1", "2", "0.5", "1e400", "nan", "inf", "-inf", "70000", "1e9", "abc", "", "9" * 40]
)


@st.composite
def argument_lists(draw: Any, paths: list[str]) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    command = COMMANDS[name]
    values = st.one_of(NUMBERS, st.sampled_from(paths), st.sampled_from(HOSTILE_TEXT), st.text(max_size=8))
    args: list[str] = name.split()
    for param in command.params:
        if draw(st.integers(0, 2)):
            continue
        if param.param_type_name == "argument":
            args.append(draw(st.sampled_from(paths) | values))
            continue
        option = draw(st.sampled_from(param.opts + list(param.secondary_opts)))
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            args.append(option)
        else:
            args += [option, draw(values)]
    if draw(st.integers(0, 9)) == 0:
        args.insert(draw(st.integers(0, len(args))), draw(st.sampled_from(["--bogus", "-x", "--", "--help"])))
    return args + SAFETY.get(name.split()[0], [])


@FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_fuzz_command_line_arguments(harness, data):
    problem = harness.write(
        "problem.json",
        json.dumps(
            {
                "nodes": [{"name": "n0", "cpu": 16000, "memory": 65536, "gpus": 4, "gpu_model": "T4"}],
                "jobs": [
                    {"name": f"j{i}", "cpu": 1000, "gpus": 1, "duration": 600, "arrival": 10 * i} for i in range(3)
                ],
            }
        ),
    )
    nodes = harness.write("nodes.csv", "name,cpu,gpus\nn0,8000,2\n")
    trace = harness.write("jobs.trace", "ResNet-18 (batch size 32)\tcmd\t--n\tTrue\t100\t0\t1\n")
    harness.write("simulation_throughputs.json", THROUGHPUTS)
    loop = harness.inputs / "loop.json"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    paths = [str(p) for p in (problem, nodes, trace, loop, harness.inputs)] + [
        "missing.json",
        "out.json",
        "out.yaml",
        "out",
        "/dev/null",
        "x" * 300 + ".json",
        str(problem) + "/x.json",
        "n0=2",
        "v100=8",
        "T4",
    ]
    harness.run(*data.draw(argument_lists(paths)))


# The library's promise (docs/formats.md, "Errors"): every malformed file is a ProblemError -------------
@FUZZ
@given(
    data=st.data(),
    reader=st.sampled_from(
        ["problem.json", "problem.yaml", "allocation.json", "nodes.csv", "jobs.csv", "pods.csv", "jobs.trace"]
    ),
)
def test_fuzz_readers_raise_nothing_but_problem_errors(tmp_path_factory, data, reader):
    from optalloc import ProblemError
    from optalloc.io import gavel, openb, read_allocation, read_jobs_csv, read_nodes_csv, read_problem

    if reader.startswith("problem"):
        content = data.draw(encoded(data.draw(problem_docs()), reader[-5:] if reader.endswith("json") else ".yaml"))
    elif reader == "allocation.json":
        content = data.draw(encoded(data.draw(allocation_docs(3, 3)), ".json"))
    elif reader == "pods.csv":
        content = data.draw(openb_pods())
    elif reader == "jobs.trace":
        content = data.draw(gavel_rows())
    else:
        content = data.draw(csv_files(NODE_COLUMNS if reader == "nodes.csv" else JOB_COLUMNS))
    path = tmp_path_factory.mktemp("read") / reader
    path.write_bytes(content)
    read = {
        "problem.json": read_problem,
        "problem.yaml": read_problem,
        "allocation.json": read_allocation,
        "nodes.csv": read_nodes_csv,
        "jobs.csv": read_jobs_csv,
        "pods.csv": openb.read_pods,
        "jobs.trace": gavel.read_trace,
    }[reader]
    try:
        read(path)
    except ProblemError as err:
        assert str(err) and "\n" not in str(err)
