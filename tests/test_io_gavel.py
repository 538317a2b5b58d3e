"""Gavel traces: both layouts, the scale-factor mix, durations from the throughput profile."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from optalloc import ProblemError
from optalloc.io import gavel

MSR_ROW = "ResNet-18 (batch size 32)\tpython3 main.py\t--num_steps\t1\t{steps}\t{arrival}\t{sf}"
PHYSICAL_ROW = "A3C\tpython3 main.py\tworkdir\t--max_steps\t0\t{steps}\t{sf}\t{weight}\t{slo}\t{arrival}"


def _trace(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "jobs.trace"
    path.write_text("\n".join(rows) + "\n")
    return path


def _throughputs(tmp_path: Path) -> Path:
    path = tmp_path / "tp.json"
    path.write_text(
        '{"v100": {"(\'ResNet-18 (batch size 32)\', 1)": {"null": 10.0}, "(\'A3C\', 1)": {"null": 4.0},'
        ' "(\'ResNet-18 (batch size 32)\', 2)": {"null": 18.0, "(\'A3C\', 1)": [9.0, 2.0]}},'
        ' "k80": {"(\'ResNet-18 (batch size 32)\', 1)": {"null": 2.0}, "(\'ResNet-18 (batch size 32)\', 2)": {"null": 0.0}}}'
    )
    return path


# Real traces ------------------------------------------------------------------------------------
@pytest.mark.traces
def test_msr_trace_has_1181_jobs_with_the_philly_gpu_mix(traces):
    folder = traces / "gavel"
    tp = gavel.read_throughputs(folder / "simulation_throughputs.json")
    trace = gavel.load_trace(folder / "msr" / "seed=0" / "0e4a51.trace", throughputs=tp)
    assert len(trace.jobs) == 1181
    assert Counter(j.gpus for j in trace.jobs) == {1: 436, 2: 226, 4: 451, 8: 68}
    assert len(set(trace.job_types)) == 26
    assert sum(not tp.has(r.job_type, r.scale_factor, "v100") for r in trace.records) == 197
    assert float(trace.arrival.max()) == 7_363_956.0
    assert all(j.duration is not None and j.duration > 0 for j in trace.jobs)
    assert trace.jobs[0].name == "0001-Transformer-bs128"
    assert len({j.name for j in trace.jobs}) == 1181
    np.testing.assert_allclose(trace.durations(tp, "v100"), [j.duration for j in trace.jobs])


@pytest.mark.traces
def test_physical_cluster_trace_is_a_batch_of_100_with_durations_of_1_to_5_hours(traces):
    folder = traces / "gavel"
    jobs = gavel.read_trace(
        folder / "physical_cluster" / "minimize_makespan.trace", throughputs=folder / "simulation_throughputs.json"
    )
    assert len(jobs) == 100
    assert Counter(j.gpus for j in jobs) == {1: 71, 2: 6, 4: 23}
    assert {j.arrival for j in jobs} == {0.0} and {j.priority for j in jobs} == {0}
    durations = [j.duration for j in jobs]
    assert min(durations) > 3590 and max(durations) < 18010


@pytest.mark.traces
def test_durations_differ_per_worker_type_and_k80_has_impossible_configs(traces):
    folder = traces / "gavel"
    tp = gavel.read_throughputs(folder / "simulation_throughputs.json")
    trace = gavel.load_trace(folder / "msr" / "seed=0" / "0e4a51.trace")
    assert all(j.duration is None for j in trace.jobs)
    v100, p100, k80 = (trace.durations(tp, w) for w in ("v100", "p100", "k80"))
    assert np.median(v100) < np.median(p100) < np.median(k80[np.isfinite(k80)])
    assert np.isinf(k80).any() and np.isfinite(v100).all()


# Mapping ----------------------------------------------------------------------------------------
def test_seven_field_rows_map_to_whole_gpu_jobs_with_durations(tmp_path):
    path = _trace(tmp_path, MSR_ROW.format(steps=1000, arrival="5.5", sf=1), MSR_ROW.format(steps=900, arrival=7, sf=2))
    a, b = gavel.read_trace(path, throughputs=_throughputs(tmp_path))
    assert (a.name, a.gpus, a.replicas, a.arrival, a.duration) == ("0001-ResNet-18-bs32", 1, 1, 5.5, 100.0)
    assert (b.gpus, b.cpu, b.memory, b.duration) == (2, 8000, 32768, 50.0)


def test_missing_pair_falls_back_to_scale_factor_one(tmp_path):
    path = _trace(tmp_path, PHYSICAL_ROW.format(steps=400, sf=4, weight=1, slo=-1, arrival=0))
    tp = gavel.read_throughputs(_throughputs(tmp_path))
    assert not tp.has("A3C", 4, "v100")
    (job,) = gavel.read_trace(path, throughputs=tp)
    assert job.duration == 100.0 and job.gpus == 4


def test_ten_field_rows_carry_priority_weight_and_slo(tmp_path):
    path = _trace(
        tmp_path,
        PHYSICAL_ROW.format(steps=40, sf=1, weight=2, slo=3600, arrival=10),
        PHYSICAL_ROW.format(steps=40, sf=1, weight="0.5", slo=-1, arrival=20),
    )
    trace = gavel.load_trace(path)
    assert [j.priority for j in trace.jobs] == [100, -50]
    assert trace.records[0].slo == 3600.0 and trace.records[1].slo is None
    assert [j.arrival for j in trace.jobs] == [10.0, 20.0]


def test_gang_mode_makes_one_gpu_replicas_that_pack(tmp_path):
    (job,) = gavel.read_trace(_trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=4)), gang=True)
    assert (job.gpus, job.replicas, job.placement.value, job.cpu) == (1, 4, "pack", 4000)


def test_cluster_builds_servers_with_a_remainder_node():
    nodes = gavel.gavel_cluster({"v100": 20, "k80": 8}, gpus_per_node=8)
    assert [(n.name, n.gpus) for n in nodes] == [("v100-000", 8), ("v100-001", 8), ("v100-002", 4), ("k80-000", 8)]
    assert nodes[0].cpu == 64000 and nodes[0].memory == 512 * 1024 and nodes[2].cpu == 32000
    assert sum(n.gpus for n in gavel.gavel_cluster()) == 500


def test_gavel_problem_places_the_trace_on_servers(tmp_path):
    path = _trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=8))
    problem = gavel.gavel_problem(path, counts={"v100": 16})
    assert len(problem.nodes) == 2 and problem.hostable(0)


def test_short_type_names():
    assert gavel.short_type("Recommendation (batch size 512)") == "Recommendation-bs512"
    assert gavel.short_type("A3C") == "A3C"


# Bad input --------------------------------------------------------------------------------------
def _error(path: Path, **kwargs) -> str:
    with pytest.raises(ProblemError) as info:
        gavel.read_trace(path, **kwargs)
    return str(info.value)


def test_wrong_field_count_names_the_line(tmp_path):
    path = _trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=1), "A3C\tcmd\t-n\t1\t100\t0")
    assert _error(path) == "jobs.trace line 2: 6 tab-separated fields in this row, expected 7 like line 1"
    path = _trace(tmp_path, "A3C\tcmd\t-n\t1")
    assert _error(path) == (
        "jobs.trace line 1: 4 tab-separated fields in this row, expected 7 (msr) or 10 (physical_cluster)"
    )


def test_bad_numbers_name_line_and_field(tmp_path):
    assert _error(_trace(tmp_path, MSR_ROW.format(steps="x", arrival=0, sf=1))) == (
        "jobs.trace line 1, total_steps: 'x' is not an integer"
    )
    assert _error(_trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=0))) == (
        "jobs.trace line 1, scale_factor: 0 is below 1"
    )
    assert _error(_trace(tmp_path, MSR_ROW.format(steps=1, arrival="-3", sf=1))) == (
        "jobs.trace line 1, arrival_time: -3.0 is negative"
    )


def test_unknown_job_type_and_worker_type_are_named(tmp_path):
    tp = _throughputs(tmp_path)
    path = _trace(tmp_path, MSR_ROW.replace("ResNet-18 (batch size 32)", "GPT-9").format(steps=1, arrival=0, sf=1))
    assert _error(path, throughputs=tp) == "jobs.trace line 1, job_type: 'GPT-9' has no throughput on v100 in tp.json"
    path = _trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=1))
    assert _error(path, throughputs=tp, worker_type="h100") == (
        "jobs.trace line 1, worker_type: 'h100' is not a worker type of tp.json (known: v100, k80)"
    )
    path = _trace(tmp_path, MSR_ROW.format(steps=1, arrival=0, sf=2))
    assert _error(path, throughputs=tp, worker_type="k80") == (
        "jobs.trace line 1, job_type: 'ResNet-18 (batch size 32)' cannot run on 2 x k80 (throughput 0 in tp.json)"
    )
