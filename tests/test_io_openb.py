"""The openb and PAI trace readers: counts on the real traces, and exact messages on bad rows."""

from collections import Counter
from pathlib import Path

import pytest

from optalloc import Job, ProblemError
from optalloc.io import openb, pai

HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"


def _openb(traces: Path, name: str) -> Path:
    return traces / "alibaba-gpu-v2023" / name


# Real traces ------------------------------------------------------------------------------------
@pytest.mark.traces
def test_node_list_has_1523_nodes_1213_with_gpus_and_6212_gpus(traces):
    nodes = openb.read_nodes(_openb(traces, "openb_node_list_all_node.csv"))
    assert len(nodes) == 1523
    gpu_nodes = [n for n in nodes if n.gpus]
    assert len(gpu_nodes) == 1213
    assert sum(n.gpus for n in nodes) == 6212
    assert all(n.gpu_model is None for n in nodes if not n.gpus)
    shapes = Counter((n.gpu_model, n.gpus) for n in gpu_nodes)
    assert shapes[("G2", 8)] == 549 and shapes[("T4", 2)] == 387 and shapes[("A10", 1)] == 2
    assert nodes[0].name == "openb-node-0000" and nodes[0].cpu == 32000 and nodes[0].memory == 262144


@pytest.mark.traces
def test_gpu_only_keeps_the_1213_gpu_nodes(traces):
    nodes = openb.read_nodes(_openb(traces, "openb_node_list_all_node.csv"), gpu_only=True)
    assert len(nodes) == 1213 and all(n.gpus > 0 for n in nodes)


@pytest.mark.traces
def test_default_pod_list_composition_matches_the_published_mix(traces):
    jobs = openb.read_pods(_openb(traces, "openb_pod_list_default.csv"))
    assert len(jobs) == 8152
    assert sum(j.gpu_demand == 0 for j in jobs) == 1088
    assert sum(j.gpu_milli > 0 for j in jobs) == 3078
    assert sum(j.gpus == 1 for j in jobs) == 6989 - 3078
    assert Counter(j.gpus for j in jobs if j.gpus > 1) == {2: 16, 4: 15, 8: 44}
    assert sum(j.gpu_demand for j in jobs) == 6_086_800
    assert jobs[0].name == "openb-pod-0000" and jobs[0].arrival == 0.0 and jobs[0].duration == 12537496.0
    assert all(j.duration is not None and j.duration >= 0 for j in jobs)
    assert sum(j.memory == 0 for j in jobs) == 1


@pytest.mark.traces
def test_multigpu50_has_only_resource_columns_and_reads_without_times(traces):
    jobs = openb.read_pods(_openb(traces, "openb_pod_list_multigpu50.csv"))
    assert len(jobs) == 9061
    assert sum(j.gpu_demand for j in jobs) == 11_358_800
    assert all(j.arrival == 0.0 and j.duration is None for j in jobs)
    assert Counter(j.gpus for j in jobs if j.gpus > 1) == {2: 222, 4: 206, 8: 556}
    assert len(jobs) - 8152 == 909 and all(j.gpus > 1 for j in jobs[8152:])


@pytest.mark.traces
def test_gpushare100_has_only_sharing_gpu_pods(traces):
    jobs = openb.read_pods(_openb(traces, "openb_pod_list_gpushare100.csv"))
    assert len(jobs) == 8152
    assert sum(j.gpu_milli > 0 for j in jobs) == 7064 and not any(j.gpus for j in jobs)
    assert round(sum(j.gpu_demand for j in jobs) / 1000, 1) == 3952.7  # the README rounds 3952.67


@pytest.mark.traces
def test_read_openb_builds_a_problem_every_pod_of_which_fits_some_node(traces):
    problem = openb.read_openb(
        _openb(traces, "openb_node_list_all_node.csv"),
        _openb(traces, "openb_pod_list_default.csv"),
        gpu_nodes_only=True,
    )
    assert len(problem.nodes) == 1213 and len(problem.jobs) == 8152
    assert all(problem.hostable(j) for j in range(len(problem.jobs)))
    assert int(problem.capacity[:, 2].sum()) == 6_212_000


@pytest.mark.traces
def test_pai_machine_list_composition(traces):
    folder = traces / "alibaba-gpu-v2020"
    nodes = pai.read_machines(folder / "pai_machine_spec.csv", folder / "pai_machine_spec.header")
    assert len(nodes) == 1897
    assert Counter((n.gpu_model, n.gpus) for n in nodes) == {
        ("P100", 2): 798,
        ("T4", 2): 497,
        ("MISC", 8): 280,
        ("V100M32", 8): 135,
        ("V100", 8): 104,
        (None, 0): 83,
    }
    assert sum(n.gpus for n in nodes) == 6742
    assert {n.cpu for n in nodes} <= {64000, 96000}
    assert {n.memory for n in nodes} <= {384 * 1024, 512 * 1024}
    assert nodes == pai.read_machines(folder / "pai_machine_spec.csv")


# Mapping of one row ------------------------------------------------------------------------------
def _pods(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "pods.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_pod_rows_map_to_whole_shared_multi_and_cpu_only_jobs(tmp_path):
    path = _pods(
        tmp_path,
        "a,1000,2048,1,1000,,LS,Running,10,70,10",
        "b,500,1024,1,250,V100M16|V100M32,BE,Running,5,,",
        "c,8000,4096,4,1000,,LS,Failed,0,100,0",
        "d,2000,512,0,0,,BE,Pending,3,4,",
    )
    a, b, c, d = openb.read_pods(path)
    assert a == Job("a", cpu=1000, memory=2048, gpus=1, arrival=10.0, duration=60.0)
    assert b == Job("b", cpu=500, memory=1024, gpu_milli=250, gpu_models={"V100M16", "V100M32"}, arrival=5.0)
    assert c.gpus == 4 and c.gpu_milli == 0 and c.duration == 100.0
    assert d.gpu_demand == 0 and d.duration == 1.0


def test_gpu_nodes_only_and_model_none_for_empty_model(tmp_path):
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,32000,1024,0,\nn1,64000,2048,2,T4\n")
    n0, n1 = openb.read_nodes(path)
    assert n0.gpu_model is None and n1.gpu_model == "T4" and n1.gpus == 2
    assert [n.name for n in openb.read_nodes(path, gpu_only=True)] == ["n1"]


# Bad input: exact messages -----------------------------------------------------------------------
def _error(path: Path, reader=openb.read_pods) -> str:
    with pytest.raises(ProblemError) as info:
        reader(path)
    return str(info.value)


def test_bad_integer_names_file_line_and_column(tmp_path):
    rows = [f"p{i},1000,1024,1,500,,LS,Running,0,1,0" for i in range(15)]
    rows.append("bad,1000,1024,1,abc,,LS,Running,0,1,0")
    path = _pods(tmp_path, *rows, name="openb_pod_list_default.csv")
    assert _error(path) == "openb_pod_list_default.csv line 17, gpu_milli: 'abc' is not an integer"


def test_negative_cpu_is_rejected(tmp_path):
    assert _error(_pods(tmp_path, "a,-5,1024,0,0,,,,,,")) == "pods.csv line 2, cpu_milli: -5 is negative"


def test_missing_column_is_named(tmp_path):
    path = _pods(tmp_path, "a,1,2,0", header="name,cpu_milli,memory_mib,num_gpu")
    assert _error(path) == (
        "pods.csv line 1: 'gpu_milli' column is missing (the header has: name, cpu_milli, memory_mib, num_gpu)"
    )


def test_duplicate_pod_name_names_both_lines(tmp_path):
    path = _pods(tmp_path, "a,1,2,0,0,,,,,,", "b,1,2,0,0,,,,,,", "a,1,2,0,0,,,,,,")
    assert _error(path) == "pods.csv line 4, name: 'a' duplicates line 2"


def test_wrong_field_count_is_named(tmp_path):
    path = _pods(tmp_path, "a,1,2,0,0", header="name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec")
    assert _error(path) == (
        "pods.csv line 2: 5 fields in this row, but the header has 6 "
        "(name, cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec)"
    )


def test_multi_gpu_pod_must_take_whole_gpus(tmp_path):
    path = _pods(tmp_path, "a,1,2,2,500,,,,,,")
    assert _error(path) == (
        "pods.csv line 2, gpu_milli: 500 is not 1000 for a pod with num_gpu=2 (only one GPU can be shared)"
    )


def test_one_gpu_pod_share_must_be_between_1_and_1000(tmp_path):
    assert _error(_pods(tmp_path, "a,1,2,1,0,,,,,,")) == (
        "pods.csv line 2, gpu_milli: 0 is not between 1 and 1000 for a pod with num_gpu=1"
    )
    assert _error(_pods(tmp_path, "a,1,2,1,1500,,,,,,")).endswith(
        "1500 is not between 1 and 1000 for a pod with num_gpu=1"
    )


def test_cpu_only_pod_with_a_share_is_rejected(tmp_path):
    assert (
        _error(_pods(tmp_path, "a,1,2,0,300,,,,,,"))
        == "pods.csv line 2, gpu_milli: 300 is not 0 for a pod with num_gpu=0"
    )


def test_deletion_before_creation_is_rejected(tmp_path):
    assert _error(_pods(tmp_path, "a,1,2,0,0,,,,50,40,")) == (
        "pods.csv line 2, deletion_time: 40.0 is before creation_time=50"
    )


def test_gpu_spec_naming_an_unknown_model_points_at_the_pod(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn,1000,100,2,T4\n")
    pods = _pods(tmp_path, "a,1,2,1,1000,X100,,,,,")
    with pytest.raises(ProblemError) as info:
        openb.read_openb(nodes, pods)
    assert str(info.value) == "pods.csv line 2, gpu_spec: 'X100' is not a GPU model of the node list (known: T4)"


def test_duplicate_node_name_is_rejected(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn,1,1,0,\nn,1,1,0,\n")
    assert _error(nodes, openb.read_nodes) == "nodes.csv line 3, sn: 'n' duplicates line 2"


def test_pai_cpu_machine_with_gpus_and_bad_numbers_are_rejected(tmp_path):
    path = tmp_path / "pai_machine_spec.csv"
    path.write_text("m1,CPU,96,512,0\nm2,CPU,96,512,8\n")
    assert _error(path, pai.read_machines) == "pai_machine_spec.csv line 2, cap_gpu: 8 is not 0 on a CPU machine"
    path.write_text("m1,T4,lots,512,2\n")
    assert _error(path, pai.read_machines) == "pai_machine_spec.csv line 1, cap_cpu: 'lots' is not a number"
    path.write_text("m1,T4,96,512\n")
    assert "line 1: 4 fields in this row, but the header has 5" in _error(path, pai.read_machines)


def test_pai_units_are_cores_to_milli_and_gb_to_mib(tmp_path):
    path = tmp_path / "pai.csv"
    path.write_text("machine,gpu_type,cap_cpu,cap_mem,cap_gpu\nm1,MISC,64,384,8\n")
    (node,) = pai.read_machines(path)
    assert (node.cpu, node.memory, node.gpus, node.gpu_model) == (64000, 384 * 1024, 8, "MISC")
