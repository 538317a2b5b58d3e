"""Problem and allocation files: round trips, the JSON Schemas, and exact messages on bad files."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from optalloc import Allocation, Job, Node, Placement, Problem, ProblemError, Reason, Status, Unplaced
from optalloc.core import ObjectiveWeights
from optalloc.io import (
    allocation_from_dict,
    allocation_to_dict,
    problem_from_dict,
    problem_to_dict,
    read_allocation,
    read_problem,
    write_allocation,
    write_problem,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
SCHEMAS = REPO / "docs" / "schema"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _problem() -> Problem:
    nodes = [
        Node("a100-0", cpu=64000, memory=524288, gpus=8, gpu_model="A100", gpu_memory=81920, labels={"zone": "a"}),
        Node("t4-0", cpu=32000, memory=131072, gpus=4, gpu_model="T4"),
        Node("cpu-0", cpu=96000, memory=393216),
    ]
    jobs = [
        Job("train", cpu=16000, memory=131072, gpus=4, replicas=2, placement="pack", priority=2, duration=86400.5),
        Job("sweep", cpu=8000, memory=32768, gpus=1, replicas=4, min_replicas=2, arrival=60.25),
        Job("nb", cpu=500, memory=4096, gpu_milli=250, gpu_models={"T4", "A100"}, node_selector={"zone": "a"}),
        Job("etl", cpu=24000, memory=98304, preemptible=False, priority=-1),
        Job("h100-only", gpus=1, gpu_models={"H100"}),
    ]
    current = Allocation((Placement("etl", 0, "cpu-0"),), method="previous", status=Status.FEASIBLE)
    weights = ObjectiveWeights(migration=50, lexicographic=True)
    return Problem(tuple(nodes), tuple(jobs), current, weights, gpu_models=frozenset({"H100"}))


def _same(a: Problem, b: Problem) -> bool:
    return (a.nodes, a.jobs, a.current, a.weights, a.gpu_models) == (
        b.nodes,
        b.jobs,
        b.current,
        b.weights,
        b.gpu_models,
    )


def _allocation() -> Allocation:
    return Allocation(
        (
            Placement("train", 0, "a100-0", (0, 1, 2, 3), 1000),
            Placement("train", 1, "a100-0", (4, 5, 6, 7), 1000),
            Placement("nb", 0, "t4-0", (2,), 250),
            Placement("etl", 0, "cpu-0"),
        ),
        (Unplaced("sweep", Reason.INSUFFICIENT_CAPACITY, "needs 4 GPUs"), Unplaced("h100-only", Reason.FITS_NO_NODE)),
        method="best-fit",
        status=Status.FEASIBLE,
        objective=8250.0,
        bound=9000.5,
        wall_time=0.0123,
        stats={"nodes_scanned": 3},
    )


# Round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_problem_file_round_trip_is_the_identity(tmp_path, suffix):
    problem = _problem()
    path = tmp_path / f"problem{suffix}"
    write_problem(problem, path)
    assert _same(read_problem(path), problem)
    assert _same(problem_from_dict(problem_to_dict(problem)), problem)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_allocation_file_round_trip_is_the_identity(tmp_path, suffix):
    allocation = _allocation()
    path = tmp_path / f"allocation{suffix}"
    write_allocation(allocation, path)
    assert read_allocation(path) == allocation
    write_allocation(allocation, path, problem=_problem())
    assert read_allocation(path) == allocation


def test_allocation_file_has_the_issue_shape():
    data = allocation_to_dict(_allocation())
    assert list(data) == ["summary", "placements", "unplaced"]
    assert data["placements"][2] == {"job": "nb", "replica": 0, "node": "t4-0", "gpus": [2], "gpu_milli": 250}
    assert data["placements"][3] == {"job": "etl", "replica": 0, "node": "cpu-0", "gpus": [], "gpu_milli": 0}
    assert data["unplaced"][0] == {"job": "sweep", "reason": "insufficient capacity", "detail": "needs 4 GPUs"}
    assert data["summary"] == {
        "method": "best-fit",
        "status": "feasible",
        "objective": 8250.0,
        "bound": 9000.5,
        "gap": pytest.approx((9000.5 - 8250.0) / 9000.5),
        "wall_time": 0.0123,
        "stats": {"nodes_scanned": 3},
    }


def test_allocation_summary_with_the_problem_is_the_full_summary():
    problem = _problem()
    data = allocation_to_dict(_allocation(), problem)
    expected = _allocation().summary(problem).to_dict()
    assert {k: data["summary"][k] for k in expected} == json.loads(json.dumps(expected))
    assert data["summary"]["gpu_milli_allocated"] == 8250


def test_unplaced_reasons_read_back_as_reason_members():
    allocation = allocation_from_dict({"unplaced": [{"job": "a", "reason": "fits no node"}]})
    assert allocation.unplaced[0].reason is Reason.FITS_NO_NODE


def test_an_unknown_unplaced_reason_in_a_file_is_an_error_listing_the_reasons():
    with pytest.raises(ProblemError, match=r"^unplaced\[0\]\.reason: 'because' is not one of fits no node, "):
        allocation_from_dict({"unplaced": [{"job": "a", "reason": "because"}]})


def test_yaml_and_json_examples_describe_the_same_problem():
    a, b = read_problem(EXAMPLES / "problem.json"), read_problem(EXAMPLES / "problem.yaml")
    assert _same(a, b)
    assert len(a.nodes) == 4 and len(a.jobs) == 8
    assert a.nodes[0].memory == 512 * 1024 and a.nodes[0].gpu_memory == 80 * 1024
    assert a.job_index["notebook-alice"] == 3 and a.jobs[3].cpu == 500


# JSON Schemas ------------------------------------------------------------------------------------
def test_examples_and_written_files_validate_against_the_schemas(tmp_path):
    problem_schema = _validator("problem.schema.json")
    allocation_schema = _validator("allocation.schema.json")
    for document in (
        json.loads((EXAMPLES / "problem.json").read_text()),
        yaml.safe_load((EXAMPLES / "problem.yaml").read_text()),
    ):
        problem_schema.validate(document)
    write_problem(_problem(), tmp_path / "p.json")
    problem_schema.validate(json.loads((tmp_path / "p.json").read_text()))
    write_allocation(_allocation(), tmp_path / "a.json", problem=_problem())
    allocation_schema.validate(json.loads((tmp_path / "a.json").read_text()))
    write_allocation(_allocation(), tmp_path / "a.yaml")
    allocation_schema.validate(yaml.safe_load((tmp_path / "a.yaml").read_text()))


def test_schema_lists_exactly_the_fields_of_node_and_job():
    schema = json.loads((SCHEMAS / "problem.schema.json").read_text())
    from dataclasses import fields

    assert set(schema["$defs"]["node"]["properties"]) == {f.name for f in fields(Node)}
    assert set(schema["$defs"]["job"]["properties"]) == {f.name for f in fields(Job)}
    assert set(schema["properties"]["weights"]["properties"]) == {f.name for f in fields(ObjectiveWeights)}


def test_schema_rejects_what_the_reader_rejects():
    schema = _validator("problem.schema.json")
    bad = [
        {"jobs": [{"name": "a", "gpus": 1, "gpu_milli": 500}]},
        {"jobs": [{"name": "a", "memory": "16Qi"}]},
        {"jobs": [{"name": "a", "gpu": 1}]},
        {"nodes": [{"cpu": 1}]},
        {"version": 2},
    ]
    for document in bad:
        assert not schema.is_valid(document), document
        with pytest.raises(ProblemError):
            problem_from_dict(document)


# Bad files: exact messages -----------------------------------------------------------------------
def _error(tmp_path: Path, document, name: str = "problem.json", reader=read_problem) -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ProblemError) as info:
        reader(path)
    return str(info.value)


def test_negative_gpus_names_the_json_path(tmp_path):
    doc = {"jobs": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d", "gpus": -1}]}
    assert _error(tmp_path, doc) == "problem.json: jobs[3].gpus: -1 is negative"


def test_missing_name_is_named(tmp_path):
    assert _error(tmp_path, {"nodes": [{"cpu": 1}]}) == "problem.json: nodes[0]: {'cpu': 1} has no 'name' field"


def test_unknown_key_lists_the_valid_ones(tmp_path):
    assert _error(tmp_path, {"jobs": [{"name": "a", "gpu": 2}]}) == (
        "problem.json: jobs[0].gpu: 2 is not a job field (known: name, cpu, memory, gpus, gpu_milli, gpu_memory, "
        "replicas, min_replicas, gpu_models, node_selector, priority, arrival, duration, placement, preemptible)"
    )
    assert _error(tmp_path, {"node": []}).startswith("problem.json: node: [] is not a problem file field (known: ")


def test_not_a_mapping_is_named(tmp_path):
    assert _error(tmp_path, [1, 2]) == "problem.json: [1, 2] is not a mapping (a problem: version, nodes, jobs)"
    assert _error(tmp_path, {"nodes": ["n1"]}) == (
        "problem.json: nodes[0]: 'n1' is not a mapping (a node: name, cpu, memory, gpus, ...)"
    )


def test_bad_unit_names_the_field_and_gives_examples(tmp_path):
    doc = {"jobs": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d", "memory": "16Qi"}]}
    assert _error(tmp_path, doc) == "problem.json: jobs[3].memory: '16Qi' is not a memory quantity (e.g. 512Mi, 16Gi)"


def test_duplicate_job_name_is_named(tmp_path):
    doc = {"jobs": [{"name": "a"}, {"name": "a"}]}
    assert _error(tmp_path, doc) == "problem.json: jobs[1].name: 'a' duplicates jobs[0]"


def test_json_syntax_error_names_file_line_and_column(tmp_path):
    text = '{\n  "nodes": [\n    {"name": "n",, }\n  ]\n}\n'
    assert _error(tmp_path, text) == (
        'problem.json line 3, column 18: \'{"name": "n",, }\' '
        "is not valid JSON (Expecting property name enclosed in double quotes)"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = _error(tmp_path, "nodes:\n  - name: n\n   cpu: 4\n", name="problem.yaml")
    assert message.startswith("problem.yaml line 3, column ") and "is not valid YAML" in message


def test_unknown_suffix_is_refused(tmp_path):
    assert _error(tmp_path, "{}", name="problem.txt") == (
        "problem.txt: '.txt' is not a known file suffix (.json, .yaml, .yml)"
    )


def test_unsupported_version_is_refused(tmp_path):
    assert _error(tmp_path, {"version": 2}) == "problem.json: version: 2 is not a supported version (1)"


def test_bad_weights_and_current_are_named(tmp_path):
    assert _error(tmp_path, {"weights": {"migration": -1}}) == "problem.json: weights.migration: -1 is negative"
    doc = {"nodes": [{"name": "n"}], "jobs": [{"name": "a"}], "current": {"placements": [{"job": "a", "node": "m"}]}}
    assert _error(tmp_path, doc) == "problem.json: current.placements[0].node: 'm' is not a node of this problem"


def test_bad_allocation_files_are_named(tmp_path):
    def err(doc):
        return _error(tmp_path, doc, name="allocation.json", reader=read_allocation)

    assert err({"placements": [{"job": "a", "node": "n", "gpus": [-1]}]}) == (
        "allocation.json: placements[0].gpus[0]: -1 is negative"
    )
    assert err({"placements": [{"job": "a"}]}) == "allocation.json: placements[0]: {'job': 'a'} has no 'node' field"
    assert err({"summary": {"status": "great"}}) == (
        "allocation.json: summary.status: 'great' is not one of optimal, feasible, infeasible, unknown"
    )
    assert err({"unplaced": [{"job": "a", "reason": ""}]}) == "allocation.json: unplaced[0].reason: '' is not a reason"
    assert err({"placement": []}).startswith("allocation.json: placement: [] is not an allocation field")


def test_from_dict_errors_carry_no_file_name():
    with pytest.raises(ProblemError, match=r"^jobs\[0\]\.cpu: 'lots' is not a CPU quantity"):
        problem_from_dict({"jobs": [{"name": "a", "cpu": "lots"}]})


# Property: any problem survives the trip through JSON and YAML ----------------------------------
# Names and labels: any printable text (control characters are refused in names, see test_limits.py).
_printable = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_names = st.text(_printable, min_size=1, max_size=12).filter(lambda s: s.strip())
_labels = st.dictionaries(st.text(_printable, min_size=1, max_size=5), st.text(_printable, max_size=5), max_size=2)
_nodes = st.builds(
    Node,
    name=_names,
    cpu=st.integers(0, 10**6),
    memory=st.integers(0, 10**7),
    gpus=st.integers(0, 8),
    gpu_model=st.sampled_from([None, "A100", "T4", "no", "null", "1e3"]),
    gpu_memory=st.integers(0, 10**5),
    labels=_labels,
)


@st.composite
def _jobs(draw):
    gpus = draw(st.integers(0, 8))
    replicas = draw(st.integers(1, 4))
    return Job(
        draw(_names),
        cpu=draw(st.integers(0, 10**6)),
        memory=draw(st.integers(0, 10**7)),
        gpus=gpus,
        gpu_milli=0 if gpus else draw(st.integers(0, 999)),
        gpu_memory=draw(st.integers(0, 10**5)),
        replicas=replicas,
        min_replicas=draw(st.integers(1, replicas)),
        node_selector=draw(_labels),
        priority=draw(st.integers(-5, 5)),
        arrival=draw(st.floats(-1e9, 1e9, allow_nan=False)),
        duration=draw(st.none() | st.floats(0, 1e9, allow_nan=False)),
        placement=draw(st.sampled_from(["any", "pack", "spread", "single-node"])),
        preemptible=draw(st.booleans()),
    )


@given(
    nodes=st.lists(_nodes, max_size=4, unique_by=lambda n: n.name),
    jobs=st.lists(_jobs(), max_size=5, unique_by=lambda j: j.name),
)
@settings(max_examples=40)
def test_any_problem_round_trips_through_json_and_yaml(tmp_path_factory, nodes, jobs):
    problem = Problem(tuple(nodes), tuple(jobs))
    folder = tmp_path_factory.mktemp("rt")
    for suffix in (".json", ".yaml"):
        write_problem(problem, folder / f"p{suffix}")
        assert _same(read_problem(folder / f"p{suffix}"), problem)
