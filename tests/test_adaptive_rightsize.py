"""Right-sizing rules: who qualifies for a GPU share, and with what spec."""

from __future__ import annotations

import math

import pytest

from optalloc import Job, Node, Placement, ProblemError
from optalloc.adaptive import JobUsage, Observation, RightSizing
from optalloc.adaptive.rightsize import JobTrack, candidates, track

NODES = {"n": Node("n", cpu=8000, memory=64000, gpus=2, gpu_model="A", gpu_memory=16000)}
WHERE = {"j": [Placement("j", 0, "n", (0,), 1000)]}


def qualify(job: Job, tr: JobTrack, rs: RightSizing | None = None) -> dict:  # type: ignore[type-arg]
    return candidates({job.name: job}, WHERE, NODES, {job.name: tr}, rs or RightSizing())


def test_an_idle_whole_gpu_job_gets_a_share_with_headroom() -> None:
    found = qualify(Job("j", gpus=1), JobTrack(gpu_per_gpu=230.0, gpu_memory=2000.0, count=5, time=0.0))
    rz = found["j"]
    assert rz.share == 300  # 230 x 1.25 = 287.5, up to a multiple of 50
    assert rz.job.gpus == 0 and rz.job.gpu_milli == 300 and rz.job.gpu_memory == 2500


def test_busy_or_memory_hungry_or_unobserved_jobs_keep_their_gpu() -> None:
    job = Job("j", gpus=1)
    assert qualify(job, JobTrack(600.0, 2000.0, 5, 0.0)) == {}  # 750 > max_share 500
    assert qualify(job, JobTrack(100.0, 7000.0, 5, 0.0)) == {}  # 8750 MiB > half of 16000
    assert qualify(job, JobTrack(100.0, math.nan, 5, 0.0)) == {}  # GPU memory never observed
    assert qualify(job, JobTrack(100.0, 1000.0, 2, 0.0)) == {}  # too few observations


def test_opt_in_per_job_and_non_preemptible_jobs_only_when_named() -> None:
    tr = JobTrack(100.0, 1000.0, 5, 0.0)
    pinned = Job("j", gpus=1, preemptible=False)
    assert qualify(pinned, tr) == {}
    assert "j" in qualify(pinned, tr, RightSizing(jobs=frozenset({"j"})))
    assert qualify(Job("j", gpus=1), tr, RightSizing(jobs=frozenset({"other"}))) == {}
    assert qualify(Job("j", gpus=2), tr) == {}  # only one-GPU replicas can become a share


def test_tracking_smooths_utilisation_and_keeps_the_memory_peak() -> None:
    rs = RightSizing(tau=10.0)
    usage = track(
        {}, Observation(0.0, jobs={"j": JobUsage(gpu_milli=1000.0, gpu_memory=4000.0, gpus=2)}), frozenset({"j"}), rs
    )
    assert usage["j"] == JobTrack(500.0, 4000.0, 1, 0.0)
    usage = track(
        usage, Observation(10.0, jobs={"j": JobUsage(gpu_milli=0.0, gpu_memory=1000.0, gpus=2)}), frozenset({"j"}), rs
    )
    assert usage["j"].gpu_per_gpu == pytest.approx(500.0 * math.exp(-1))
    assert usage["j"].gpu_memory == 4000.0 and usage["j"].count == 2
    ignored = track(usage, Observation(20.0, jobs={"x": JobUsage(gpu_milli=1.0, gpus=1)}), frozenset({"j"}), rs)
    assert "x" not in ignored  # not running


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ProblemError, match=r"right_size\.max_share"):
        RightSizing(max_share=1000)
    with pytest.raises(ProblemError, match=r"right_size\.headroom"):
        RightSizing(headroom=0.5)
