"""Kubernetes-style quantities become canonical integers, rounded in the safe direction."""

import pytest

from optalloc import ProblemError
from optalloc.io.units import cpu_milli, memory_mib


@pytest.mark.parametrize(
    ("value", "milli"),
    [("500m", 500), ("2", 2000), ("2.5", 2500), (" 0.1 ", 100), ("1e1", 10000), (4000, 4000), (4000.0, 4000)],
)
def test_cpu_quantities_become_milli_cores(value, milli):
    assert cpu_milli(value) == milli


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        ("512Mi", 512),
        ("16Gi", 16384),
        ("1.5Ti", 1572864),
        ("1024Ki", 1),
        ("1G", 954),  # 953.67 MiB, a request rounds up
        ("500M", 477),
        ("1Ei", 1024**4),
        (16384, 16384),
    ],
)
def test_memory_quantities_become_mib(value, mib):
    assert memory_mib(value) == mib


def test_capacities_round_down_and_requests_round_up():
    assert memory_mib("1G", capacity=True) == 953
    assert memory_mib("1G") == 954
    assert cpu_milli("0.0005", capacity=True) == 0
    assert cpu_milli("0.0005") == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("16Qi", "memory: '16Qi' is not a memory quantity (e.g. 512Mi, 16Gi)"),
        ("16gi", "memory: '16gi' is not a memory quantity (e.g. 512Mi, 16Gi)"),
        ("16384", "memory: '16384' has no unit: write MiB as a plain number, or add a unit (512Mi, 16Gi)"),
        ("-1Gi", "memory: '-1Gi' is negative"),
        (-5, "memory: -5 is negative"),
        (1.5, 'memory: 1.5 is not an integer (MiB; or a string with a unit, e.g. "1.5Gi")'),
        (True, "memory: True is not a memory quantity (e.g. 512Mi, 16Gi)"),
        (None, "memory: None is not a memory quantity (e.g. 512Mi, 16Gi)"),
    ],
)
def test_bad_memory_quantities_are_named(value, message):
    with pytest.raises(ProblemError) as info:
        memory_mib(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 cores", "cpu: '2 cores' is not a CPU quantity (e.g. 500m, 2, or an integer of milli-cores)"),
        ("2Gi", "cpu: '2Gi' is not a CPU quantity (e.g. 500m, 2, or an integer of milli-cores)"),
        (2.5, 'cpu: 2.5 is not an integer (milli-cores; write cores as a string, e.g. "2.5")'),
        ("-1", "cpu: '-1' is negative"),
    ],
)
def test_bad_cpu_quantities_are_named(value, message):
    with pytest.raises(ProblemError) as info:
        cpu_milli(value)
    assert str(info.value) == message


def test_field_path_is_the_one_given():
    with pytest.raises(ProblemError, match=r"^jobs\[3\]\.memory: '16Qi'"):
        memory_mib("16Qi", "jobs[3].memory")
