"""The command line: every command end to end, bad input as one line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optalloc import Job, Node, Problem
from optalloc.io import read_allocation, read_problem, write_problem

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "optalloc", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def small(tmp_path: Path) -> Path:
    nodes = [Node(f"n{i}", cpu=16000, memory=65536, gpus=4, gpu_model="T4") for i in range(3)]
    jobs = [Job(f"j{i}", cpu=2000, memory=4096, gpus=1 + i % 2) for i in range(6)] + [Job("huge", cpu=10**6)]
    path = tmp_path / "problem.json"
    write_problem(Problem(nodes, jobs), path)
    return path


@pytest.mark.slow
def test_plan_writes_an_allocation_that_verify_accepts(small: Path, tmp_path: Path):
    out = tmp_path / "allocation.json"
    proc = run("plan", str(small), "--method", "cpsat", "--time-limit", "5", "--out", str(out), check=True)
    assert "GPU allocated" in proc.stdout and "fits no node" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"summary", "placements", "unplaced"}
    assert data["unplaced"] == [
        {"job": "huge", "reason": "fits no node", "detail": "no node can hold one replica even when empty"}
    ]
    assert run("verify", str(small), str(out)).returncode == 0


def test_verify_exits_one_and_lists_violations(small: Path, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"placements": [{"job": "j0", "replica": 0, "node": "n0", "gpus": [9], "gpu_milli": 1000}], "unplaced": []}
        )
    )
    proc = run("verify", str(small), str(bad))
    assert proc.returncode == 1
    assert "gpu index out of range" in proc.stdout
    assert "job neither placed nor unplaced" in proc.stdout


def test_bad_input_is_one_line_and_exit_status_2(tmp_path: Path):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"version": 1, "nodes": [{"name": "n", "cpu": 1000}], "jobs": [{"name": "a", "gpus": -1}]})
    )
    proc = run("plan", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: p.json: jobs[0].gpus: -1 is negative"]
    assert "Traceback" not in proc.stderr


def test_missing_file_and_unknown_method_are_one_line_errors(small: Path):
    missing = run("plan", "nowhere.json")
    assert missing.returncode == 2 and missing.stderr.startswith("error: No such file or directory")
    unknown = run("plan", str(small), "--method", "simplex")
    assert unknown.returncode == 2 and "valid methods: auto, cpsat" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [("watch", "missing.json", "--once"), ("plan",), ("simulate", "--trace", "x", "--jobs", "0"), ("no-such-command",)],
)
def test_usage_errors_are_one_line_and_exit_status_2(args: tuple[str, ...]):
    proc = run(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_fit_names_the_like_option_when_its_node_is_unknown(small: Path):
    proc = run("fit", str(small), "--like", "no-such-node")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --like: 'no-such-node' is not a node")


def test_plan_json_goes_to_stdout_for_other_tools(small: Path):
    proc = run("plan", str(small), "--method", "best-fit", "--json", check=True)
    data = json.loads(proc.stdout)
    assert data["summary"]["method"] == "best-fit"
    assert {"job", "replica", "node", "gpus", "gpu_milli"} == set(data["placements"][0])


@pytest.mark.slow
def test_what_if_adding_nodes_places_more(small: Path):
    base = json.loads(run("plan", str(small), "--method", "best-fit", "--json", check=True).stdout)
    more = json.loads(
        run("plan", str(small), "--method", "best-fit", "--json", "--add-like", "n0=2", check=True).stdout
    )
    assert more["summary"]["gpu_milli_capacity"] == base["summary"]["gpu_milli_capacity"] + 8000


def test_what_if_removing_a_model_and_bad_model_name(small: Path):
    gone = run("plan", str(small), "--method", "best-fit", "--remove-model", "T4", "--json", check=True)
    assert json.loads(gone.stdout)["summary"]["nodes"] == 0
    bad = run("plan", str(small), "--remove-model", "H100")
    assert bad.returncode == 2 and "--remove-model: 'H100' is not a GPU model of the cluster (known: T4)" in bad.stderr


def test_fit_finds_how_many_more_nodes_it_takes(tmp_path: Path):
    nodes = [Node("n0", cpu=16000, memory=65536, gpus=2, gpu_model="T4")]
    jobs = [Job(f"j{i}", cpu=1000, gpus=1) for i in range(7)]
    path = tmp_path / "p.json"
    write_problem(Problem(nodes, jobs), path)
    proc = run("fit", str(path), "--like", "n0", check=True)
    assert "3 more node(s) like n0" in proc.stdout


@pytest.mark.slow
def test_import_csv_and_plan_the_examples(tmp_path: Path):
    out = tmp_path / "from_csv.yaml"
    run(
        "import",
        "csv",
        "--nodes",
        str(EXAMPLES / "nodes.csv"),
        "--jobs",
        str(EXAMPLES / "jobs.csv"),
        "--out",
        str(out),
        check=True,
    )
    problem = read_problem(out)
    assert problem.jobs and problem.nodes
    alloc = tmp_path / "a.yaml"
    run("plan", str(out), "--method", "fgd", "--out", str(alloc), check=True)
    assert read_allocation(alloc).method == "fgd"


@pytest.mark.slow
def test_import_openb_and_gavel(traces: Path, tmp_path: Path):
    t = traces / "alibaba-gpu-v2023"
    out = tmp_path / "openb.json"
    proc = run(
        "import",
        "openb",
        "--nodes",
        str(t / "openb_node_list_all_node.csv"),
        "--pods",
        str(t / "openb_pod_list_default.csv"),
        "--gpu-nodes-only",
        "--out",
        str(out),
        check=True,
    )
    assert "1213 nodes (6212 GPUs), 8152 jobs" in proc.stdout
    g = traces / "gavel"
    out2 = tmp_path / "gavel.json"
    proc = run(
        "import",
        "gavel",
        str(g / "msr" / "seed=0" / "0e4a51.trace"),
        "--throughputs",
        str(g / "simulation_throughputs.json"),
        "--cluster",
        "v100=128",
        "--out",
        str(out2),
        check=True,
    )
    assert "1181 jobs" in proc.stdout


def test_methods_lists_engines_and_orders():
    proc = run("methods", check=True)
    for name in ("auto", "cpsat", "milp", "lp-bound", "fgd", "best-fit"):
        assert name in proc.stdout
    assert "round-robin" in proc.stdout


@pytest.mark.slow
def test_demo_runs_the_embedded_workload_and_repeats_its_figures():
    proc = run("demo", "--time-limit", "30", check=True)  # CP-SAT proves the optimum in about 1 s when idle
    again = run("demo", "--time-limit", "30", check=True)

    def figures(text: str) -> list[str]:  # the table without the time column, whatever the column widths
        rows = [line.split() for line in text.splitlines() if " feasible " in line or " optimal " in line]
        return [" ".join(row[:-1]) for row in rows]

    said = "Deterministic: CP-SAT ran with one worker"
    if said in proc.stdout and said in again.stdout:
        assert figures(proc.stdout) == figures(again.stdout) and len(figures(proc.stdout)) >= 5
    else:  # a machine so busy that the wall clock ended the search before the optimum: the demo must say so
        assert "The wall clock ended the search before the optimum was proven" in proc.stdout + again.stdout
    assert "Every answer passed optalloc.verify" in proc.stdout
    assert "cpsat" in proc.stdout or "best-fit" in proc.stdout
    # an answer at its proven bound is called optimal, never "within 0.00%"
    assert "Best: " in proc.stdout and "within 0.00%" not in proc.stdout


@pytest.mark.slow
def test_plan_with_an_admission_forecast_says_what_it_held_back(tmp_path: Path):
    nodes = [Node(f"n{i}", cpu=64_000, memory=256_000, gpus=2) for i in range(4)]
    jobs = [Job(f"s{i}", cpu=1000, gpu_milli=810) for i in range(4)] + [
        Job(f"w{i}", cpu=1000, gpus=1) for i in range(4)
    ]
    path = tmp_path / "mixed.json"
    write_problem(Problem(nodes, jobs), path)
    out = tmp_path / "allocation.json"
    proc = run("plan", str(path), "--method", "best-fit", "--admission-forecast", "3", "--out", str(out), check=True)
    assert "admission control: active" in proc.stdout and "held back" in proc.stdout
    assert {u.reason for u in read_allocation(out).unplaced} == {"held back"}
    assert run("verify", str(path), str(out)).returncode == 0
    off = run("plan", str(path), "--method", "best-fit", "--admission-forecast", "1", check=True)
    assert "admission control: inactive" in off.stdout


def test_plan_with_pop_splits_into_parts_and_writes_a_verified_allocation(small: Path, tmp_path: Path):
    out = tmp_path / "pop.json"
    args = ("plan", str(small), "--method", "pop", "--parts", "2", "--inner", "best-fit", "--executor", "serial")
    run(*args, "--time-limit", "5", "--out", str(out), check=True)
    assert run("verify", str(small), str(out)).returncode == 0


def test_plan_rejects_an_unknown_pop_executor_in_one_line(small: Path):
    proc = run("plan", str(small), "--method", "pop", "--executor", "cloud")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: executor: 'cloud' is not one of auto, ray, local, serial"]
