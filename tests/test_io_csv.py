"""Generic CSV import: field-named columns, units, k=v;k2=v2 labels, errors naming file, line, column."""

from pathlib import Path

import pytest

from optalloc import Job, Node, ProblemError
from optalloc.io import read_jobs_csv, read_nodes_csv, read_problem

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_csvs_match_the_example_problem():
    problem = read_problem(EXAMPLES / "problem.yaml")
    nodes = read_nodes_csv(EXAMPLES / "nodes.csv")
    assert [n.name for n in nodes] == [n.name for n in problem.nodes]
    assert [(n.cpu, n.memory, n.gpus, n.gpu_model) for n in nodes] == [
        (n.cpu, n.memory, n.gpus, n.gpu_model) for n in problem.nodes
    ]
    assert nodes[0].labels == {"zone": "a", "rack": "r1"}
    jobs = {j.name: j for j in read_jobs_csv(EXAMPLES / "jobs.csv")}
    assert jobs["llm-pretrain"] == Job(
        "llm-pretrain", cpu=16000, memory=131072, gpus=4, replicas=2, placement="pack", priority=2, duration=86400
    )
    assert jobs["resnet-sweep"].min_replicas == 2 and jobs["resnet-sweep"].replicas == 4
    assert jobs["inference-small"].gpu_models == {"T4"} and jobs["inference-small"].node_selector == {"zone": "a"}
    assert jobs["etl-nightly"].preemptible is False


def test_empty_cells_take_the_defaults_and_units_are_read(tmp_path):
    path = _write(tmp_path, "jobs.csv", "name,cpu,memory,gpu_milli,duration\na,250m,1G,,\nb,2000,512,300,60\n")
    a, b = read_jobs_csv(path)
    assert a == Job("a", cpu=250, memory=954)
    assert b == Job("b", cpu=2000, memory=512, gpu_milli=300, duration=60.0)


def test_node_capacity_units_round_down(tmp_path):
    path = _write(tmp_path, "nodes.csv", "name,cpu,memory,gpus,gpu_model\nn,96000,1G,2,T4\n")
    assert read_nodes_csv(path) == [Node("n", cpu=96000, memory=953, gpus=2, gpu_model="T4")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,cpu\na,2.5\n", "jobs.csv line 2, cpu: '2.5' is not an integer (milli-cores; or cores with a unit, e.g. 2500m)"),
        ("name,memory\na,16Qi\n", "jobs.csv line 2, memory: '16Qi' is not a memory quantity (e.g. 512Mi, 16Gi)"),
        ("name,gpus\na,1\nb,-2\n", "jobs.csv line 3, gpus: -2 is negative"),
        ("name,gpus\na,x\n", "jobs.csv line 2, gpus: 'x' is not an integer"),
        ("name,replicas\na,0\n", "jobs.csv line 2, replicas: 0 is below 1"),
        ("name,gpu\na,1\n", "jobs.csv line 1: 'gpu' is not a job field (known: name, cpu, memory, gpus, gpu_milli, "
         "gpu_memory, replicas, min_replicas, gpu_models, node_selector, priority, arrival, duration, placement, "
         "preemptible)"),
        ("cpu\n1\n", "jobs.csv line 1: 'name' column is missing (the header has: cpu)"),
        ("name\na\na\n", "jobs.csv line 3, name: 'a' duplicates line 2"),
        ("name,node_selector\na,zone\n", "jobs.csv line 2, node_selector: 'zone' is not a key=value pair (write k=v;k2=v2)"),
        ("name,preemptible\na,maybe\n", "jobs.csv line 2, preemptible: 'maybe' is not true or false"),
        ("name,gpus,gpu_milli\na,1,500\n", "jobs.csv line 2, gpu_milli: 500 is set with gpus=1: a replica takes whole GPUs or a share of one"),
        ("name,placement\na,clumped\n", "jobs.csv line 2, placement: 'clumped' is not one of any, pack, spread, single-node"),
        ("name,cpu\na,1\nb\n", "jobs.csv line 3: 1 fields in this row, but the header has 2 (name, cpu)"),
    ],
)  # fmt: skip
def test_bad_job_rows_name_file_line_and_column(tmp_path, text, message):
    with pytest.raises(ProblemError) as info:
        read_jobs_csv(_write(tmp_path, "jobs.csv", text))
    assert str(info.value) == message


def test_bad_node_rows_name_file_line_and_column(tmp_path):
    with pytest.raises(ProblemError) as info:
        read_nodes_csv(_write(tmp_path, "nodes.csv", "name,cpu,labels\nn,1,zone=a;=b\n"))
    assert str(info.value) == "nodes.csv line 2, labels: '=b' is not a key=value pair (write k=v;k2=v2)"
