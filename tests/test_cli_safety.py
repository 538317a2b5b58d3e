"""The command line loses nothing and never shows a traceback: issue 20's reproductions, one test each.

Commands run in-process through ``optalloc.cli.main`` (fast) unless the test needs a real process
(signals, a full disk behind stdout, a port taken by another socket).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optalloc import Job, Node, Problem
from optalloc.cli import main
from optalloc.io import read_allocation, write_problem


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``optalloc ARGS`` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0), out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def problem(tmp_path: Path) -> Path:
    nodes = [Node(f"n{i}", cpu=16_000, memory=65_536, gpus=4, gpu_model="T4") for i in range(2)]
    jobs = [Job(f"j{i}", cpu=2000, memory=4096, gpus=1 + i % 2, duration=600.0, arrival=30.0 * i) for i in range(5)]
    path = tmp_path / "problem.json"
    write_problem(Problem(nodes, jobs), path)
    return path


# Data never lost or overwritten --------------------------------------------------------------------
def test_plan_never_writes_over_its_input_even_with_force(capsys, problem):
    before = problem.read_bytes()
    for extra in ((), ("--force",)):
        code, _, err = cli(capsys, "plan", str(problem), "--method", "best-fit", "--out", str(problem), *extra)
        assert code == 2
        assert one_error_line(err) == (
            f"error: --out: '{problem}' is an input of this command ({problem}): write the result elsewhere"
        )
    assert problem.read_bytes() == before


def test_plan_refuses_to_replace_a_file_unless_forced(capsys, problem, tmp_path):
    out = tmp_path / "allocation.json"
    out.write_text("my notes")
    code, _, err = cli(capsys, "plan", str(problem), "--method", "best-fit", "--out", str(out))
    assert code == 2 and "already exists: pass --force to replace it" in one_error_line(err)
    assert out.read_text() == "my notes"
    code, stdout, _ = cli(capsys, "plan", str(problem), "--method", "best-fit", "--out", str(out), "--force")
    assert code == 0 and f"wrote {out}" in stdout
    assert read_allocation(out).method == "best-fit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allocation.json", "problem.json"]  # no temporary file


def test_the_output_path_is_checked_before_solving(capsys, problem, tmp_path):
    started = time.perf_counter()
    code, _, err = cli(
        capsys,
        "plan",
        str(problem),
        "--method",
        "cpsat",
        "--time-limit",
        "60",
        "--out",
        str(tmp_path / "missing" / "a.json"),
    )
    assert code == 2 and time.perf_counter() - started < 30  # the 60 s search never started
    assert "cannot be written: the folder" in one_error_line(err) and "does not exist" in err
    for bad, reason in (
        (str(problem) + "/x.json", "is not a folder"),
        (str(tmp_path / ("a" * 300 + ".json")), "has a file name longer than"),
        (str(tmp_path / "a.txt"), "is not a known file suffix"),
        (str(tmp_path), "is not a known file suffix"),
    ):
        code, _, err = cli(capsys, "plan", str(problem), "--out", bad)
        assert code == 2 and reason in one_error_line(err), err


def test_import_refuses_an_output_that_is_one_of_its_inputs(capsys, tmp_path):
    rates = tmp_path / "simulation_throughputs.json"
    rates.write_text(json.dumps({"v100": {"('ResNet-18 (batch size 32)', 1)": {"null": 2.0}}}))
    trace = tmp_path / "t.trace"
    trace.write_text("ResNet-18 (batch size 32)\tcmd\t--n\tTrue\t100\t0\t1\n")
    before = rates.read_bytes()
    code, _, err = cli(
        capsys, "import", "gavel", str(trace), "--throughputs", str(rates), "--cluster", "v100=8", "--out", str(rates)
    )
    assert code == 2 and "is an input of this command" in one_error_line(err)
    assert rates.read_bytes() == before


def test_simulate_never_overwrites_files_it_did_not_write(capsys, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "jobs.csv"
    mine.write_text("my own jobs")
    args = ("simulate", "--trace", str(problem), "--policy", "fcfs+best-fit", "--quiet", "--no-plots")
    code, _, err = cli(capsys, *args, "--out", ".")
    assert code == 2 and "already holds jobs.csv, not from an earlier optalloc simulate" in one_error_line(err)
    assert mine.read_text() == "my own jobs"
    code, _, err = cli(capsys, *args, "--out", str(problem))
    assert code == 2 and one_error_line(err) == f"error: --out: '{problem}' exists and is not a folder"


def test_simulate_may_rewrite_its_own_folder_and_removes_stale_results(capsys, problem, tmp_path):
    out = tmp_path / "sim"
    base = ("simulate", "--trace", str(problem), "--policy", "fcfs+best-fit", "--quiet", "--out", str(out))
    assert cli(capsys, *base)[0] == 0
    assert (out / "sim_queue.png").exists()
    assert cli(capsys, *base, "--no-plots")[0] == 0  # a re-run into its own folder needs no --force
    assert sorted(p.name for p in out.iterdir()) == [
        "jobs.csv",
        "metrics.csv",
        "report.md",
        "results.json",
        "timeline.csv",
    ]


@pytest.mark.slow
def test_a_full_disk_is_a_failed_write_with_status_1(problem):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "optalloc", "plan", str(problem), "--method", "best-fit", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == "error: could not write to stdout: No space left on device"
    with open("/dev/full", "w") as full:  # the tables, printed through rich
        proc = subprocess.run(
            [sys.executable, "-m", "optalloc", "plan", str(problem), "--method", "best-fit"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == "error: could not write the output: No space left on device"


# Tracebacks that reached a user --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"nodes": [{"name": "n", "gpus": 1000000000}]}', "nodes[0].gpus: 1000000000 is beyond the limit of 64"),
        ('{"nodes": [{"name": "n", "cpu": 1e30}]}', "nodes[0].cpu: 1e+30 is beyond the limit of 2**40"),
        (f'{{"nodes": [{{"name": "n", "gpus": {2**70}}}]}}', "nodes[0].gpus: 1180591620717411303424 is beyond"),
        ("[" * 100_000, "nests lists and mappings deeper than the limit of 32 levels"),
        (b"\xff\xfe{\x00}\x00", "it looks UTF-16"),
        ("caf\xe9".encode("latin-1"), "is not UTF-8 text"),
        (bytes(range(256)), "is not UTF-8 text; it looks binary"),
        ('{"nodes": [{"name": "%s"}]}' % ("n" * 300), "is longer than 253 characters"),
        ('{"nodes": [{"name": "a\\u001b[2Jb"}]}', "contains the control character '\\x1b'"),
        ('{"nodes": [], "nodes": []}', "'nodes' is a duplicate key in one JSON object"),
    ],
)
def test_bad_problem_files_are_one_line_and_status_2(capsys, tmp_path, content, expected):
    path = tmp_path / "p.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = cli(capsys, "plan", str(path))
    assert code == 2 and expected in one_error_line(err), err


def test_a_yaml_alias_bomb_is_refused_at_once(capsys, tmp_path):
    levels = "".join(f"l{i + 1}: &l{i + 1} [{', '.join([f'*l{i}'] * 9)}]\n" for i in range(12))
    path = tmp_path / "bomb.yaml"
    path.write_text("l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + levels + "nodes: []\ndescription: *l12\n")
    started = time.perf_counter()
    code, _, err = cli(capsys, "plan", str(path))
    assert code == 2 and "has YAML aliases that add" in one_error_line(err)
    assert time.perf_counter() - started < 20  # the expanded bomb would take minutes


def test_bad_csv_rows_are_one_line_and_status_2(capsys, tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("name,cpu,gpus\nn0,1e30,1\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"name,gpus\nj0,{2**70}\n")
    out = tmp_path / "p.json"
    code, _, err = cli(capsys, "import", "csv", "--nodes", str(nodes), "--jobs", str(jobs), "--out", str(out))
    assert (
        code == 2
        and one_error_line(err) == "error: nodes.csv line 2, cpu: '1e30' is beyond the limit of 2**40 (docs/limits.md)"
    )
    nodes.write_text("name,cpu,gpus\nn0,1000,1\n")
    code, _, err = cli(capsys, "import", "csv", "--nodes", str(nodes), "--jobs", str(jobs), "--out", str(out))
    assert code == 2 and "jobs.csv line 2, gpus: '1180591620717411303424' is beyond the limit" in one_error_line(err)
    assert not out.exists()


def test_os_errors_on_inputs_are_one_line(capsys, tmp_path):
    loop = tmp_path / "loop.json"
    loop.symlink_to(tmp_path / "loop.json")
    code, _, err = cli(capsys, "plan", str(loop))
    assert code == 2 and "Too many levels of symbolic links" in one_error_line(err)
    code, _, err = cli(capsys, "plan", str(tmp_path / ("x" * 300 + ".json")))
    assert code == 2 and "File name too long" in one_error_line(err)


def test_a_previous_with_a_gpu_index_beyond_the_node_names_the_placement(capsys, problem, tmp_path):
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps({"placements": [{"job": "j0", "node": "n0", "gpus": [7], "gpu_milli": 1000}]}))
    code, _, err = cli(capsys, "plan", str(problem), "--method", "best-fit", "--previous", str(previous))
    assert code == 2
    assert one_error_line(err).startswith(
        "error: previous.placements[0]: 'j0' is not a valid running placement (the caller's input): gpu index out of range"
    )


def test_watch_bad_url_and_exporter_ports_are_one_line(capsys, problem):
    code, _, err = cli(capsys, "watch", str(problem), "--prometheus", "http://[::1", "--once")
    assert (
        code == 2
        and one_error_line(err) == "error: --prometheus: 'http://[::1' is not an http(s) URL of a Prometheus server"
    )
    code, _, err = cli(capsys, "watch", str(problem), "--exporter-port", "70000", "--once")
    assert code == 2 and "'--exporter-port': Input should be less than or equal to 65535" in one_error_line(err)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli(capsys, "watch", str(problem), "--exporter-port", str(port), "--once")
    assert (
        code == 2
        and f"--exporter-port: {port} cannot be served on 127.0.0.1: Address already in use" in one_error_line(err)
    )


# Silent acceptance --------------------------------------------------------------------------------
def test_simulate_refuses_a_trace_without_jobs_or_a_cluster_without_nodes(capsys, tmp_path):
    empty = tmp_path / "nojobs.json"
    write_problem(Problem((Node("n0", gpus=1),), ()), empty)
    code, _, err = cli(capsys, "simulate", "--trace", str(empty), "--quiet", "--out", str(tmp_path / "o"))
    assert code == 2 and one_error_line(err) == f"error: --trace: '{empty}' has no jobs to replay"
    bare = tmp_path / "nonodes.json"
    write_problem(Problem((), (Job("a", duration=1.0),)), bare)
    code, _, err = cli(capsys, "simulate", "--trace", str(bare), "--quiet", "--out", str(tmp_path / "o"))
    assert code == 2 and one_error_line(err) == f"error: --trace: '{bare}' gives no nodes"
    assert not (tmp_path / "o").exists()


@pytest.fixture
def gavel_trace(tmp_path: Path) -> Path:
    (tmp_path / "simulation_throughputs.json").write_text(
        json.dumps({w: {"('ResNet-18 (batch size 32)', 1)": {"null": 2.0}} for w in ("v100", "p100", "k80")})
    )
    trace = tmp_path / "t.trace"
    trace.write_text("ResNet-18 (batch size 32)\tcmd\t--n\tTrue\t100\t0\t1\n")
    return trace


def test_cluster_types_are_named_checked_and_given_once(capsys, gavel_trace, tmp_path):
    out = str(tmp_path / "o")
    sim = ("simulate", "--trace", str(gavel_trace), "--quiet", "--out", out)
    code, _, err = cli(capsys, *sim, "--cluster", "h100=8")
    assert code == 2 and one_error_line(err).startswith(
        "error: --cluster: 'h100' is not a worker type of simulation_throughputs.json"
    )
    code, _, err = cli(capsys, *sim, "--cluster", "v100=32", "--cluster", "v100=8")
    assert code == 2 and one_error_line(err) == "error: --cluster: 'v100=8' names v100 again (give each GPU type once)"
    imp = ("import", "gavel", str(gavel_trace), "--out", str(tmp_path / "p.json"))
    code, _, err = cli(capsys, *imp, "--cluster", "a100=8")
    assert (
        code == 2
        and one_error_line(err) == "error: --cluster: 'a100' is not a worker type of Gavel (known: v100, p100, k80)"
    )
    code, _, err = cli(capsys, *imp, "--cluster", "v100=8", "--cluster", "v100=16")
    assert code == 2 and "names v100 again" in one_error_line(err)
    code, _, err = cli(capsys, *imp, "--cluster", "v100=100000000000000000000")
    assert code == 2 and "more GPUs than any cluster has" in one_error_line(err)


def test_previous_is_refused_when_the_problem_already_has_a_current(capsys, problem, tmp_path):
    placed = tmp_path / "placed.json"
    assert cli(capsys, "plan", str(problem), "--method", "best-fit", "--out", str(placed))[0] == 0
    data = json.loads(problem.read_text())
    data["current"] = {"placements": [json.loads(placed.read_text())["placements"][0]]}
    with_current = tmp_path / "with_current.json"
    with_current.write_text(json.dumps(data))
    code, _, err = cli(capsys, "plan", str(with_current), "--previous", str(placed))
    assert code == 2 and "already has a 'current' allocation: pass one or the other" in one_error_line(err)


# Unbounded work -----------------------------------------------------------------------------------
def test_huge_what_ifs_and_clusters_are_refused_before_any_work(capsys, problem, tmp_path):
    started = time.perf_counter()
    code, _, err = cli(capsys, "plan", str(problem), "--add-like", "n0=100000000")
    assert code == 2 and "adds more than 100,000 nodes, the limit" in one_error_line(err)
    code, _, err = cli(capsys, "fit", str(problem), "--like", "n0", "--max-nodes", "1000000000")
    assert code == 2 and "--max-nodes: 1000000000 would make more than 100,000 nodes" in one_error_line(err)
    code, _, err = cli(
        capsys, "simulate", "--trace", str(problem), "--quiet", "--out", str(tmp_path / "o"), "--cluster", "5"
    )
    assert code == 2 and "is not used with a problem file" in one_error_line(err)
    assert time.perf_counter() - started < 20


def test_simulate_a_billion_gpus_is_refused_at_once(capsys, gavel_trace, tmp_path):
    started = time.perf_counter()
    code, _, err = cli(
        capsys,
        "simulate",
        "--trace",
        str(gavel_trace),
        "--cluster",
        "v100=1000000000",
        "--quiet",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and "GPUs make more than 100,000 servers" in one_error_line(err)
    assert time.perf_counter() - started < 20


# What the docs promise ----------------------------------------------------------------------------
def test_plan_says_what_its_what_ifs_changed(capsys, problem):
    code, out, _ = cli(
        capsys, "plan", str(problem), "--method", "best-fit", "--add-like", "n0=2", "--remove-model", "T4"
    )
    assert code == 0
    assert "what-if: added 2 node(s) like n0 (n0+1..n0+2, 8 T4 GPUs)" in out
    assert "what-if: removed 4 node(s) with T4 GPUs (16 GPUs)" in out
    code, out, err = cli(capsys, "plan", str(problem), "--method", "best-fit", "--add-like", "n0=1", "--json")
    assert json.loads(out)["summary"]["what_if"] == ["what-if: added 1 node(s) like n0 (n0+1..n0+1, 4 T4 GPUs)"]
    assert "what-if: added 1 node(s)" in err  # said on stderr: stdout is the allocation alone


def test_watch_does_not_claim_to_keep_a_plan_on_its_first_step(capsys, problem):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens: connection refused
    code, _, err = cli(
        capsys, "watch", str(problem), "--prometheus", f"http://127.0.0.1:{port}", "--once", "--method", "best-fit"
    )
    assert code == 0
    assert "monitoring data stale, no usage observed yet:" in err and "keeping the last plan" not in err


# Interrupts (a real process: Ctrl-C is a signal) ---------------------------------------------------
def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optalloc", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a shell starts it
    )


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Lines of the process's stderr up to the first one holding ``text``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    proc.kill()
    raise AssertionError(f"{text!r} never came: {''.join(lines)}")


@pytest.mark.slow
def test_simulate_stopped_by_ctrl_c_keeps_the_policies_that_finished(tmp_path):
    from optalloc.io import synthetic

    trace = tmp_path / "mid.json"
    write_problem(synthetic.openb_like(nodes=6, jobs=150, seed=1), trace)
    args = ["simulate", "--trace", str(trace), "--policy", "fcfs+best-fit", "--policy", "rolling-horizon"]
    proc = start([*args, "--budget", "5", "--out", "sim", "--no-plots"], tmp_path)
    wait_for(proc, "policy 1/2 fcfs+best-fit done")  # progress lines come on any output, not only a terminal
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - stopped < 20  # prompt, even with CP-SAT solving in the rolling-horizon policy
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: interrupted after 1 of 2 policies; wrote the finished ones to sim (rolling-horizon did not finish)"
    )
    results = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert [p["policy"] for p in results["policies"]] == ["fcfs+best-fit"]
    assert "Interrupted (Ctrl-C) after 1 of 2 policies" in (tmp_path / "sim" / "report.md").read_text()


@pytest.mark.slow
def test_simulate_stopped_before_any_policy_finished_writes_nothing(tmp_path):
    from optalloc.io import synthetic

    trace = tmp_path / "long.json"
    write_problem(synthetic.openb_like(nodes=16, jobs=3000, seed=1), trace)
    proc = start(["simulate", "--trace", str(trace), "--policy", "fcfs+best-fit", "--out", "sim"], tmp_path)
    wait_for(proc, "jobs run their duration")  # started
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: interrupted: no policy finished, nothing written"
    assert not (tmp_path / "sim").exists()


@pytest.fixture(scope="module")
def hard(tmp_path_factory) -> Path:
    """A problem CP-SAT does not prove within a minute: the openb-like default mix on 128 nodes."""
    from optalloc.io import synthetic

    path = tmp_path_factory.mktemp("hard") / "hard.json"
    write_problem(synthetic.openb_like(nodes=128, load=1.3, seed=3), path)
    return path


def interrupted_plan(
    hard: Path, tmp_path: Path, *extra: str, signals: int = 1
) -> tuple[subprocess.CompletedProcess, float]:
    """``plan`` with CP-SAT, Ctrl-C'ed once it searches (its status line on a pseudo-terminal says so)."""
    import threading

    master, slave = os.openpty()
    args = ["plan", str(hard), "--method", "cpsat", "--time-limit", "120", "--out", "a.json", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "optalloc", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=slave,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    seen = b""
    while b"objective" not in seen:  # the search has started and found a first answer
        seen += os.read(master, 4096)
    time.sleep(0.5)
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    stopped = time.monotonic()
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    proc.wait(timeout=60)
    took = time.monotonic() - stopped
    reader.join(timeout=60)
    os.close(master)
    err = seen.decode(errors="replace").replace("\r\n", "\n")
    err = "\n".join(line.rpartition("\r")[2].replace("\x1b[K", "") for line in err.split("\n"))  # as shown
    return subprocess.CompletedProcess(proc.args, proc.returncode, b"".join(out).decode(), err), took


@pytest.mark.slow
def test_plan_stopped_by_ctrl_c_says_so_exits_130_and_writes_nothing(hard, tmp_path):
    proc, took = interrupted_plan(hard, tmp_path)
    assert took < 20 and proc.returncode == 130 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: interrupted: the search stopped before its end; nothing written "
        "(--keep-partial keeps the best answer found so far)"
    ]
    assert proc.stdout == "" and not (tmp_path / "a.json").exists()


@pytest.mark.slow
def test_plan_keep_partial_writes_the_best_answer_so_far_and_still_exits_130(hard, tmp_path):
    proc, took = interrupted_plan(hard, tmp_path, "--keep-partial")
    assert took < 20 and proc.returncode == 130 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted: kept the best answer found so far (feasible, gap ")
    assert last.endswith(" in a.json")
    answer = read_allocation(tmp_path / "a.json")
    assert answer.stats["stopped"] is True and answer.placements
    assert "GPU allocated" in proc.stdout


def run_on_terminal(args: list[str], cwd: Path) -> tuple[int, bytes, str]:
    """Run ``optalloc ARGS`` with stderr on a pseudo-terminal (stdout a pipe): (status, stderr bytes, stdout)."""
    import threading

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "optalloc", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # a full pipe must not block it
    reader.start()
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    reader.join(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks), b"".join(out).decode()


@pytest.mark.slow
def test_plan_shows_a_live_status_line_on_a_terminal_and_erases_it(hard, tmp_path):
    code, err, out = run_on_terminal(["plan", str(hard), "--method", "auto", "--time-limit", "3"], tmp_path)
    assert code == 0 and "GPU allocated" in out
    # (Before the first report the line says "auto: searching"; the engines are imported before the clock
    # starts, so the first heuristic's report may come before the first draw.)
    assert b"objective " in err and b" bound " in err and b" gap " in err
    assert err.endswith(b"\r\x1b[K")  # the status is erased: nothing of it stays on the screen


@pytest.mark.slow
def test_plan_prints_no_status_when_piped_or_with_json(hard, tmp_path, capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "optalloc", "plan", str(hard), "--method", "best-fit"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == ""
    code, err, out = run_on_terminal(["plan", str(hard), "--method", "best-fit", "--json"], tmp_path)
    assert code == 0 and err == b"" and json.loads(out)["summary"]["method"] == "best-fit"


@pytest.mark.slow
def test_watch_with_the_default_auto_prints_stopped_on_ctrl_c(hard, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    proc = start(["watch", str(hard), "--prometheus", url, "--interval", "1", "--budget", "3"], tmp_path)
    wait_for(proc, "watching ")
    time.sleep(1.0)  # within the first step's auto solve
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "stopped"


def test_a_full_disk_under_out_is_a_failed_write_with_status_1_and_no_debris(capsys, problem, tmp_path, monkeypatch):
    import optalloc.io._write as writer

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "fsync", full)
    out = tmp_path / "a.json"
    code, _, err = cli(capsys, "plan", str(problem), "--method", "best-fit", "--out", str(out))
    assert code == 1 and one_error_line(err) == f"error: could not write {out}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problem.json"]


def test_simulate_tables_and_report_give_jct_in_hours_alike(capsys, tmp_path):
    long = tmp_path / "long.json"
    jobs = [Job(f"j{i}", cpu=1000, gpus=1, arrival=3600.0 * i, duration=5 * 86400.0) for i in range(4)]
    write_problem(Problem((Node("n0", cpu=8000, memory=8192, gpus=2),), tuple(jobs)), long)
    out = tmp_path / "sim"
    code, _, err = cli(
        capsys,
        "simulate",
        "--trace",
        str(long),
        "--policy",
        "fcfs+best-fit",
        "--no-plots",
        "--out",
        str(out),
        "--tick",
        "3600",
    )
    assert code == 0 and "JCT h" in err
    report = (out / "report.md").read_text()
    assert "avg JCT (h)" in report and "(d)" not in report


def test_a_second_ctrl_c_leaves_at_once_and_never_hangs(hard, tmp_path):
    proc, took = interrupted_plan(hard, tmp_path, signals=2)
    assert took < 20 and proc.returncode == 130 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert not (tmp_path / "a.json").exists()
