"""Every malformed file is a ProblemError naming the file (docs/formats.md, "Errors"): encodings, sizes,
nesting, YAML alias bombs, duplicate keys, numbers too long to convert; and writes are atomic."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from optalloc import OutputError, ProblemError
from optalloc.core.limits import Limits
from optalloc.io import _text as text_module
from optalloc.io import (
    gavel,
    openb,
    read_allocation,
    read_jobs_csv,
    read_nodes_csv,
    read_problem,
    write_problem,
)
from optalloc.io._write import write_atomic

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def error(path: Path, reader=read_problem) -> str:
    with pytest.raises(ProblemError) as err:
        reader(path)
    return str(err.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"nodes": [{"name": "café"}]}'.encode("latin-1"), r"^p\.json line 1: b'\\xe9' is not UTF-8 text \(save"),
        ('{"nodes": []}'.encode("utf-16"), r"it looks UTF-16 \(save the file as UTF-8\)$"),
        (b"\x00\x01\x02\xff" * 50, r"^p\.json line 1: b'\\xff' is not UTF-8 text; it looks binary"),
    ],
)
def test_a_file_in_another_encoding_names_the_line_of_its_first_bad_byte(tmp_path, data, expected):
    path = tmp_path / "p.json"
    path.write_bytes(data)
    with pytest.raises(ProblemError, match=expected):
        read_problem(path)


def test_a_utf8_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"nodes": [{"name": "n"}]}).encode())
    assert read_problem(path).nodes[0].name == "n"


def test_deep_nesting_is_refused_at_the_documented_limit(tmp_path):
    for name, content in (("deep.json", "[" * 100_000), ("deep2.json", "[" * 40 + "]" * 40)):
        (tmp_path / name).write_text(content)
        assert error(tmp_path / name) == (
            f"{name}: nests lists and mappings deeper than the limit of 32 levels (docs/limits.md)"
        )
    deep = tmp_path / "deep.yaml"
    deep.write_text("description:\n" + "".join("  " * i + "- \n" for i in range(1, 60)))
    assert "deeper than the limit of 32 levels" in error(deep)


@pytest.mark.parametrize("where", ["description: *i", "nodes: [{name: n, labels: {zone: *i}}]", "jobs: *i"])
def test_a_yaml_alias_bomb_is_refused_before_anything_walks_it(tmp_path, where):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + where + "\n")
    expected = (
        r"^bomb\.yaml: has YAML aliases that add [\d,]{11} values to the document, more than the limit of "
        r"1,000,000 \(an alias bomb\?\) \(docs/limits\.md\)$"
    )
    with pytest.raises(ProblemError, match=expected):
        read_problem(path)


def test_yaml_anchors_and_merge_keys_of_ordinary_size_still_read(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "nodes:\n- &gpu {name: a, cpu: 8000, gpus: 2, labels: &zone {zone: a}}\n"
        "- {<<: *gpu, name: b, labels: *zone}\njobs: []\n"
    )
    problem = read_problem(path)
    assert [n.name for n in problem.nodes] == ["a", "b"] and problem.nodes[1].gpus == 2


def test_duplicate_keys_are_refused_in_json_and_yaml(tmp_path):
    (tmp_path / "p.json").write_text('{"nodes": [{"name": "a", "cpu": 1, "cpu": 2}]}')
    assert error(tmp_path / "p.json") == (
        "p.json: 'cpu' is a duplicate key in one JSON object (the last one would win)"
    )
    (tmp_path / "p.yaml").write_text("nodes:\n- {name: a, gpus: 1, gpus: 8}\n")
    assert error(tmp_path / "p.yaml") == (
        "p.yaml line 2, column 22: '- {name: a, gpus: 1, gpus: 8}' is not valid YAML (found duplicate key 'gpus')"
    )


def test_numbers_too_long_to_convert_are_refused(tmp_path):
    (tmp_path / "p.json").write_text('{"nodes": [{"name": "n", "cpu": %s}]}' % ("9" * 5000))
    assert error(tmp_path / "p.json") == "p.json: has an integer of more than 4300 digits (docs/limits.md)"
    (tmp_path / "p.yaml").write_text("nodes: [{name: n, cpu: %s}]\n" % ("9" * 5000))
    assert error(tmp_path / "p.yaml").startswith("p.yaml: ")
    (tmp_path / "q.yaml").write_text("nodes: [{name: n, memory: 1e999999Ei}]\n")
    assert (
        error(tmp_path / "q.yaml")
        == "q.yaml: nodes[0].memory: '1e999999Ei' is beyond the limit of 2**40 (docs/limits.md)"
    )


def test_a_file_larger_than_the_limit_is_refused_even_from_an_endless_device(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "LIMITS", Limits(file_bytes=1000))
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"description": "x" * 2000}))
    assert error(path) == "big.json: is larger than the limit of 0 MiB (docs/limits.md)"
    if Path("/dev/zero").exists():
        with pytest.raises(ProblemError, match="is larger than the limit"):
            read_nodes_csv("/dev/zero")


def test_csv_and_trace_readers_refuse_bad_encodings_and_huge_fields(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_bytes("name,cpu\ncafé,1000\n".encode("latin-1"))
    assert error(nodes, read_nodes_csv) == "nodes.csv line 2: b'\\xe9' is not UTF-8 text (save the file as UTF-8)"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("name,cpu\n" + "a" * 200_000 + ",1\n")
    assert "is not valid CSV (field larger than field limit" in error(jobs, read_jobs_csv)
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1e30,1,0,0\n")
    assert (
        error(pods, openb.read_pods)
        == "pods.csv line 2, cpu_milli: '1e30' is beyond the limit of 2**40 (docs/limits.md)"
    )
    trace = tmp_path / "jobs.trace"
    trace.write_text("ResNet-18\tcmd\t--n\tTrue\t100\t0\t1\n", encoding="utf-16")
    assert "it looks UTF-16" in error(trace, gavel.read_trace)
    steps = tmp_path / "steps.trace"
    steps.write_text("ResNet-18\tcmd\t--n\tTrue\t%s\t0\t1\n" % ("9" * 30))
    assert error(steps, gavel.read_trace).startswith("steps.trace line 1, total_steps: ")
    rates = tmp_path / "simulation_throughputs.json"
    rates.write_text("[" * 5000)
    assert "deeper than the limit" in error(rates, gavel.read_throughputs)


def test_an_unknown_unplaced_reason_and_control_characters_in_an_allocation_file_are_refused(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"unplaced": [{"job": "x", "reason": "because"}]}))
    assert error(path, read_allocation).startswith("a.json: unplaced[0].reason: 'because' is not one of fits no node")
    path.write_text(json.dumps({"unplaced": [{"job": "x", "reason": "not selected", "detail": "\x1b[2J"}]}))
    assert "contains the control character '\\x1b'" in error(path, read_allocation)


def test_writes_replace_the_file_atomically_keeping_its_mode(tmp_path):
    from optalloc import Node, Problem

    path = tmp_path / "p.json"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_problem(Problem((Node("n"),), ()), path)
    assert read_problem(path).nodes[0].name == "n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no temporary file left


def test_a_failed_write_is_an_output_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("old")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"^could not write .*a\.json: No space left on device$"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with pytest.raises(OutputError, match="could not write"):
        write_atomic(tmp_path / "missing" / "a.json", "x")


def test_writing_through_a_symbolic_link_keeps_the_link(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


@pytest.mark.parametrize(
    ("schema", "document"),
    [
        ("problem.schema.json", {"nodes": [{"name": "n", "gpus": 10**9}]}),
        ("problem.schema.json", {"nodes": [{"name": "a\x1b[2J"}]}),
        ("problem.schema.json", {"nodes": [{"name": "n" * 254}]}),
        ("problem.schema.json", {"jobs": [{"name": "j", "cpu": 2**70}]}),
        ("problem.schema.json", {"jobs": [{"name": "j", "replicas": 10**9}]}),
        ("problem.schema.json", {"nodes": [{"name": "n", "labels": {"zone": "a\nb"}}]}),
        (
            "allocation.schema.json",
            {
                "summary": {"method": "x", "status": "feasible"},
                "placements": [],
                "unplaced": [{"job": "a", "reason": "because"}],
            },
        ),
    ],
)
def test_the_json_schemas_refuse_what_the_readers_refuse(tmp_path, schema, document):
    import jsonschema

    from optalloc.io.allocation_file import allocation_from_dict
    from optalloc.io.problem_file import problem_from_dict

    validator = jsonschema.Draft202012Validator(
        json.loads((Path(__file__).parents[1] / "docs" / "schema" / schema).read_text())
    )
    assert list(validator.iter_errors(document))
    with pytest.raises(ProblemError):
        (problem_from_dict if schema.startswith("problem") else allocation_from_dict)(document)
