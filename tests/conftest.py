"""Shared fixtures: where the public traces are, and the hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Profiles: "default" keeps the whole suite within ~15 minutes on 2 cores; "thorough" for long runs
# (pytest --hypothesis-profile=thorough); "ci" is "default" printing a reproduction blob on failure.
# Select one with --hypothesis-profile=NAME or $HYPOTHESIS_PROFILE. Properties that set max_examples
# themselves scale it from the loaded profile (tests/test_conformance.py: twice it, per method).
settings.register_profile("default", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]


def traces_dir() -> Path:
    """The public traces: $OPTALLOC_TRACES, else ../shared/data/traces beside the checkout."""
    env = os.environ.get("OPTALLOC_TRACES")
    return Path(env) if env else REPO.parent / "shared" / "data" / "traces"


@pytest.fixture(scope="session")
def traces() -> Path:
    path = traces_dir()
    if not (path / "alibaba-gpu-v2023").is_dir():
        pytest.skip(f"public traces not found at {path} (set OPTALLOC_TRACES)")
    return path
