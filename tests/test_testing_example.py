"""examples/test_my_scheduler.py runs, passes, and its properties catch a broken scheduler."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import Phase, given, settings

from optalloc import Allocation

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "test_my_scheduler.py"


@pytest.fixture
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_test_my_scheduler", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_without_shrinking(example, test):
    """The example's property on the example's problems (a fixed seed: the same examples every run), stopping
    at the first failure (nothing saved)."""
    inner = test.hypothesis.inner_test

    @settings(database=None, phases=[Phase.generate], max_examples=200, deadline=None, derandomize=True)
    @given(example.SUPPORTED)
    def run(problem):
        inner(problem)

    run()


def test_example_properties_pass(example):
    example.test_my_scheduler_gives_valid_answers_and_loses_no_job()
    example.test_my_scheduler_never_beats_the_optimum()


def test_example_properties_catch_a_scheduler_that_forgets_unplaced_jobs(example, monkeypatch):
    scheduler = example.my_scheduler

    def forgetful(problem):
        return Allocation(scheduler(problem).placements, method="forgetful")

    monkeypatch.setattr(example, "my_scheduler", forgetful)
    with pytest.raises(AssertionError, match=r"'forgetful' (is not a valid allocation|does not account for every job)"):
        run_without_shrinking(example, example.test_my_scheduler_gives_valid_answers_and_loses_no_job)


def test_example_properties_catch_a_scheduler_that_double_books_gpus(example, monkeypatch):
    scheduler = example.my_scheduler

    def greedy_for_gpus(problem):
        answer = scheduler(problem)
        doubled = [dataclasses.replace(p, gpus=tuple(0 for _ in p.gpus)) for p in answer.placements]
        return answer.replace(placements=tuple(doubled), method="double-booking")

    monkeypatch.setattr(example, "my_scheduler", greedy_for_gpus)
    with pytest.raises(AssertionError, match="'double-booking' is not a valid allocation"):
        run_without_shrinking(example, example.test_my_scheduler_gives_valid_answers_and_loses_no_job)
