"""Worker counts follow the CPUs this process may use (its affinity mask), not the machine's count."""

from __future__ import annotations

import os

import pytest

from optalloc.core import usable_cpus
from optalloc.core.options import SolveOptions


def test_usable_cpus_is_the_affinity_mask_when_the_platform_has_one(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus() == 2
    assert SolveOptions().num_workers == 2


def test_usable_cpus_falls_back_to_the_cpu_count_without_an_affinity_call(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this platform")
def test_usable_cpus_matches_this_process():
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_explicit_and_deterministic_workers_win():
    assert SolveOptions(workers=3).num_workers == 3
    assert SolveOptions(deterministic=True).num_workers == 1
