"""Readers for the Gavel job traces (OSDI'20) and its throughput profile, and Gavel-style servers.

Trace files are tab-separated, without a header, in one of two layouts (detected per file, from its
first row):

- 7 fields (``msr/``, Philly-derived): ``job_type, command, num_steps_arg, needs_data_dir,
  total_steps, arrival_time, scale_factor``;
- 10 fields (``physical_cluster/``): ``job_type, command, working_directory, num_steps_arg,
  needs_data_dir, total_steps, scale_factor, priority_weight, SLO, arrival_time``.

Mapping to :class:`Job` (one per row):

- name ``<line>-<type>``, the file line zero-padded to 4 digits and the job type shortened, e.g.
  ``0042-ResNet-18-bs32`` for ``ResNet-18 (batch size 32)`` on line 42 (Job has no labels; the
  full type stays in :class:`GavelJob`);
- ``gpus = scale_factor`` whole GPUs on one node (``gang=True`` instead makes ``scale_factor``
  replicas of one GPU each, a gang that may span nodes, with placement ``pack``);
- ``cpu`` and ``memory`` per GPU: Gavel has none, so ``cpu_per_gpu`` (default 4 cores = 4000
  milli-cores) and ``memory_per_gpu`` (default 16 GiB = 16384 MiB) times the GPUs of the replica;
- ``arrival = arrival_time`` (seconds);
- ``priority = round(100 x (priority_weight - 1))``: Gavel's default weight 1 is priority 0 and the
  order of weights is kept (to 0.01); the 7-field format has no weight (priority 0). ``SLO`` is kept
  in :class:`GavelJob` only;
- ``duration = total_steps / throughput`` in seconds, the throughput being the isolated
  steps per second of ``(job_type, scale_factor)`` on ``worker_type`` from
  ``simulation_throughputs.json``; pairs without an entry (non-scalable models such as
  ``('A3C', 4)``) fall back to the ``scale_factor = 1`` throughput. Without throughputs the
  duration is None (unknown).

A simulator that needs the duration on each GPU type keeps the :class:`GavelTrace` (job types,
total steps and scale factors as arrays) and calls :meth:`GavelTrace.durations` per worker type.
"""

from __future__ import annotations

import ast
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from optalloc.core import LIMITS, Job, Node, PlacementRule, Problem, ProblemError
from optalloc.io._text import StrPath, parse_json, read_text

MSR_FIELDS = (
    "job_type",
    "command",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "arrival_time",
    "scale_factor",
)
PHYSICAL_FIELDS = (
    "job_type",
    "command",
    "working_directory",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "scale_factor",
    "priority_weight",
    "SLO",
    "arrival_time",
)
LAYOUTS = {len(MSR_FIELDS): MSR_FIELDS, len(PHYSICAL_FIELDS): PHYSICAL_FIELDS}

#: The GPU types of Gavel's throughput profile (``simulation_throughputs.json``; its ``*_unconsolidated``
#: variants aside): the types a Gavel cluster is made of when no profile is given.
WORKER_TYPES = ("v100", "p100", "k80")
CPU_PER_GPU = 4000  # milli-cores per GPU of a job (Gavel has no CPU request)
MEMORY_PER_GPU = 16 * 1024  # MiB per GPU of a job
NODE_CPU_PER_GPU = 8000  # milli-cores per GPU of a server (64 cores for 8 GPUs)
NODE_MEMORY_PER_GPU = 64 * 1024  # MiB per GPU of a server (512 GiB for 8 GPUs)

__all__ = [
    "WORKER_TYPES",
    "GavelJob",
    "GavelTrace",
    "Throughputs",
    "gavel_cluster",
    "gavel_problem",
    "load_trace",
    "read_throughputs",
    "read_trace",
    "short_type",
]


@dataclass(frozen=True)
class GavelJob:
    """One row of a Gavel trace, as written (``line`` is the file line, 1-based)."""

    line: int
    job_type: str
    total_steps: int
    arrival: float
    scale_factor: int
    priority_weight: float = 1.0
    slo: float | None = None


@dataclass(frozen=True)
class Throughputs:
    """Isolated throughputs (steps per second) per worker type and ``(job_type, scale_factor)``.

    A rate of 0 is the profile's way of saying the job cannot run so (e.g. ResNet-50 with batch
    size 128 on 2+ K80s): its duration there is ``inf``.
    """

    rates: Mapping[str, Mapping[tuple[str, int], float]]
    source: str = "throughputs"

    @property
    def worker_types(self) -> tuple[str, ...]:
        return tuple(self.rates)

    def has(self, job_type: str, scale_factor: int, worker_type: str) -> bool:
        """Whether the profile has this exact pair (without the ``scale_factor = 1`` fallback)."""
        return (job_type, scale_factor) in self._worker(worker_type)

    def rate(self, job_type: str, scale_factor: int, worker_type: str) -> float:
        """Steps per second of the job on ``scale_factor`` GPUs of ``worker_type`` (fallback: 1 GPU)."""
        table = self._worker(worker_type)
        found = table.get((job_type, scale_factor))
        if found is None:
            found = table.get((job_type, 1))
        if found is None:
            raise ProblemError("job_type", job_type, f"has no throughput on {worker_type} in {self.source}")
        return found

    def duration(self, job_type: str, scale_factor: int, worker_type: str, total_steps: int) -> float:
        """Seconds to run ``total_steps`` steps in isolation (``inf`` where the profile says 0 steps/s)."""
        rate = self.rate(job_type, scale_factor, worker_type)
        return total_steps / rate if rate > 0 else math.inf

    def _worker(self, worker_type: str) -> Mapping[tuple[str, int], float]:
        try:
            return self.rates[worker_type]
        except KeyError:
            known = ", ".join(self.rates)
            raise ProblemError(
                "worker_type", worker_type, f"is not a worker type of {self.source} (known: {known})"
            ) from None


@dataclass(frozen=True)
class GavelTrace:
    """A Gavel trace: the rows, the :class:`Job` objects, and the arrays a simulator needs.

    ``job_types`` (object array of str), ``total_steps`` and ``scale_factor`` (int64) and
    ``arrival`` (float64, seconds) are aligned with ``jobs`` and ``records``.
    """

    records: tuple[GavelJob, ...]
    jobs: tuple[Job, ...]
    job_types: np.ndarray
    total_steps: np.ndarray
    scale_factor: np.ndarray
    arrival: np.ndarray
    source: str = ""

    def durations(self, throughputs: Throughputs, worker_type: str) -> np.ndarray:
        """float64 (jobs,): isolated duration in seconds of every job on ``worker_type``."""
        rates = np.empty(len(self.records), dtype=np.float64)
        memo: dict[tuple[str, int], float] = {}
        for i, rec in enumerate(self.records):
            key = (rec.job_type, rec.scale_factor)
            if key not in memo:
                try:
                    memo[key] = throughputs.rate(rec.job_type, rec.scale_factor, worker_type)
                except ProblemError as err:
                    raise ProblemError(f"{self.source} line {rec.line}, {err.field}", err.value, err.reason) from None
            rates[i] = memo[key]
        with np.errstate(divide="ignore"):
            out: np.ndarray = np.where(rates > 0, self.total_steps / np.where(rates > 0, rates, 1.0), np.inf)
        return out


def read_throughputs(path: StrPath) -> Throughputs:
    """The isolated (``"null"``) throughputs of ``simulation_throughputs.json``."""
    path = Path(path)
    raw = parse_json(read_text(path), path.name)
    if not isinstance(raw, dict):
        raise ProblemError(path.name, raw, "is not a mapping of worker types")
    rates: dict[str, Mapping[tuple[str, int], float]] = {}
    for worker, table in raw.items():
        if not isinstance(table, dict):
            raise ProblemError(f"{path.name}: {worker}", table, "is not a mapping of (job_type, scale_factor)")
        out: dict[tuple[str, int], float] = {}
        for key, entry in table.items():
            pair = _pair(key)
            if pair is None:
                raise ProblemError(f"{path.name}: {worker}", key, "is not a \"('job type', scale_factor)\" key")
            rate = entry.get("null") if isinstance(entry, dict) else None
            if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate < math.inf:
                raise ProblemError(f"{path.name}: {worker}.{key}.null", rate, "is not a throughput (steps/s >= 0)")
            out[pair] = float(rate)
        rates[worker] = MappingProxyType(out)
    return Throughputs(MappingProxyType(rates), path.name)


def load_trace(
    path: StrPath,
    *,
    throughputs: Throughputs | StrPath | None = None,
    worker_type: str = "v100",
    cpu_per_gpu: int = CPU_PER_GPU,
    memory_per_gpu: int = MEMORY_PER_GPU,
    gang: bool = False,
) -> GavelTrace:
    """Read a Gavel trace into a :class:`GavelTrace` (see the module docstring for the mapping)."""
    path = Path(path)
    label = path.name
    if throughputs is not None and not isinstance(throughputs, Throughputs):
        throughputs = read_throughputs(throughputs)
    records = _records(path)
    width = max(4, len(str(records[-1].line))) if records else 4
    jobs: list[Job] = []
    memo: dict[tuple[str, int], float] = {}
    for rec in records:
        duration = None
        if throughputs is not None:
            key = (rec.job_type, rec.scale_factor)
            if key not in memo:
                try:
                    memo[key] = throughputs.rate(rec.job_type, rec.scale_factor, worker_type)
                except ProblemError as err:
                    raise ProblemError(f"{label} line {rec.line}, {err.field}", err.value, err.reason) from None
            if memo[key] <= 0:
                raise ProblemError(
                    f"{label} line {rec.line}, job_type",
                    rec.job_type,
                    f"cannot run on {rec.scale_factor} x {worker_type} (throughput 0 in {throughputs.source})",
                )
            duration = rec.total_steps / memo[key]
        per = 1 if gang else rec.scale_factor
        try:
            jobs.append(
                Job(
                    f"{rec.line:0{width}d}-{short_type(rec.job_type)}",
                    cpu=cpu_per_gpu * per,
                    memory=memory_per_gpu * per,
                    gpus=per,
                    replicas=rec.scale_factor if gang else 1,
                    priority=round(100 * (rec.priority_weight - 1)),
                    arrival=rec.arrival,
                    duration=duration,
                    placement=PlacementRule.PACK if gang and rec.scale_factor > 1 else PlacementRule.ANY,
                )
            )
        except ProblemError as err:
            raise ProblemError(f"{label} line {rec.line}, {err.field}", err.value, err.reason) from None
    return GavelTrace(
        tuple(records),
        tuple(jobs),
        np.array([r.job_type for r in records], dtype=object),
        np.array([r.total_steps for r in records], dtype=np.int64),
        np.array([r.scale_factor for r in records], dtype=np.int64),
        np.array([r.arrival for r in records], dtype=np.float64),
        label,
    )


def read_trace(
    path: StrPath,
    *,
    throughputs: Throughputs | StrPath | None = None,
    worker_type: str = "v100",
    cpu_per_gpu: int = CPU_PER_GPU,
    memory_per_gpu: int = MEMORY_PER_GPU,
    gang: bool = False,
) -> list[Job]:
    """The jobs of a Gavel trace, in file order (durations on ``worker_type`` when throughputs are given)."""
    trace = load_trace(
        path,
        throughputs=throughputs,
        worker_type=worker_type,
        cpu_per_gpu=cpu_per_gpu,
        memory_per_gpu=memory_per_gpu,
        gang=gang,
    )
    return list(trace.jobs)


def gavel_cluster(
    counts: Mapping[str, int] | None = None,
    *,
    gpus_per_node: int = 8,
    cpu_per_gpu: int = NODE_CPU_PER_GPU,
    memory_per_gpu: int = NODE_MEMORY_PER_GPU,
    gpu_memory: Mapping[str, int] | None = None,
) -> list[Node]:
    """Servers for a Gavel cluster configuration: ``counts`` GPUs per worker type (default 500 V100).

    Each type gets ``counts[t] // gpus_per_node`` servers of ``gpus_per_node`` GPUs, plus one server
    with the remainder. A server has ``cpu_per_gpu`` milli-cores and ``memory_per_gpu`` MiB per GPU
    (default 8 cores and 64 GiB per GPU: 64 cores and 512 GiB for 8 GPUs), model = the worker type,
    and ``gpu_memory[t]`` MiB per GPU when given. Names are ``<type>-<index>`` (``v100-000``).
    """
    counts = {"v100": 500} if counts is None else counts
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or gpus_per_node < 1:
        raise ProblemError("gpus_per_node", gpus_per_node, "is not a number of GPUs (1 or more)")
    if gpus_per_node > LIMITS.gpus_per_node:
        raise ProblemError(
            "gpus_per_node",
            gpus_per_node,
            f"is beyond the limit of {LIMITS.gpus_per_node} GPUs per node (docs/limits.md)",
        )
    servers = 0
    for model, total in counts.items():
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ProblemError(f"counts.{model}", total, "is not a number of GPUs")
        servers += -(-total // gpus_per_node)
        if servers > LIMITS.nodes:  # checked before any node exists
            raise ProblemError(
                f"counts.{model}",
                total,
                f"GPUs make more than {LIMITS.nodes:,} servers of {gpus_per_node}, the limit of nodes (docs/limits.md)",
            )
    nodes: list[Node] = []
    for model, total in counts.items():
        sizes = [gpus_per_node] * (total // gpus_per_node) + ([total % gpus_per_node] if total % gpus_per_node else [])
        width = max(3, len(str(len(sizes) - 1)))
        per_gpu_memory = (gpu_memory or {}).get(model, 0)
        for i, gpus in enumerate(sizes):
            nodes.append(
                Node(
                    f"{model}-{i:0{width}d}",
                    cpu=cpu_per_gpu * gpus,
                    memory=memory_per_gpu * gpus,
                    gpus=gpus,
                    gpu_model=model,
                    gpu_memory=per_gpu_memory,
                )
            )
    return nodes


def gavel_problem(
    path: StrPath,
    *,
    counts: Mapping[str, int] | None = None,
    gpus_per_node: int = 8,
    throughputs: Throughputs | StrPath | None = None,
    worker_type: str = "v100",
    gang: bool = False,
) -> Problem:
    """A problem of a Gavel trace's jobs on :func:`gavel_cluster` servers (default 500 V100, 8 per server)."""
    jobs = read_trace(path, throughputs=throughputs, worker_type=worker_type, gang=gang)
    return Problem(tuple(gavel_cluster(counts, gpus_per_node=gpus_per_node)), tuple(jobs))


def short_type(job_type: str) -> str:
    """``'ResNet-18 (batch size 32)'`` -> ``'ResNet-18-bs32'`` (for job names)."""
    text = re.sub(r"\s*\(batch size (\d+)\)", r"-bs\1", job_type.strip())
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    return text or "job"


# Internals -----------------------------------------------------------------------------------
def _pair(key: str) -> tuple[str, int] | None:
    try:
        value = ast.literal_eval(key)
    except (ValueError, SyntaxError):
        return None
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return value[0], value[1]
    return None


def _records(path: Path) -> list[GavelJob]:
    label = path.name
    records: list[GavelJob] = []
    layout: Sequence[str] | None = None
    first = 0
    with io.StringIO(read_text(path), newline=None) as handle:
        for line, text in enumerate(handle, start=1):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split("\t")
            if layout is None:
                if len(fields) not in LAYOUTS:
                    raise ProblemError(
                        f"{label} line {line}",
                        len(fields),
                        "tab-separated fields in this row, expected 7 (msr) or 10 (physical_cluster)",
                    )
                layout, first = LAYOUTS[len(fields)], line
            elif len(fields) != len(layout):
                raise ProblemError(
                    f"{label} line {line}",
                    len(fields),
                    f"tab-separated fields in this row, expected {len(layout)} like line {first}",
                )
            records.append(_record(label, line, dict(zip(layout, fields, strict=True))))
            if len(records) > LIMITS.jobs:
                raise ProblemError(
                    label, len(records), f"jobs are more than the limit of {LIMITS.jobs:,} (docs/limits.md)"
                )
    return records


def _record(label: str, line: int, row: dict[str, str]) -> GavelJob:
    def where(column: str) -> str:
        return f"{label} line {line}, {column}"

    def integer(column: str, minimum: int) -> int:
        text = row[column].strip()
        try:
            value = int(text)
        except ValueError:
            raise ProblemError(where(column), text, "is not an integer") from None
        if value < minimum:
            raise ProblemError(where(column), value, "is negative" if minimum == 0 else f"is below {minimum}")
        if value > LIMITS.quantity:
            raise ProblemError(where(column), text, "is beyond the limit of 2**40 (docs/limits.md)")
        return value

    def number(column: str) -> float:
        text = row[column].strip()
        try:
            value = float(text)
        except ValueError:
            raise ProblemError(where(column), text, "is not a number") from None
        if not math.isfinite(value):
            raise ProblemError(where(column), text, "is not a finite number")
        return value

    job_type = row["job_type"].strip()
    if not job_type:
        raise ProblemError(where("job_type"), job_type, "is empty")
    arrival = number("arrival_time")
    if arrival < 0:
        raise ProblemError(where("arrival_time"), arrival, "is negative")
    out: dict[str, Any] = {}
    if "priority_weight" in row:
        weight = number("priority_weight")
        if weight <= 0:
            raise ProblemError(where("priority_weight"), weight, "is not positive")
        slo = number("SLO")
        out = {"priority_weight": weight, "slo": None if slo < 0 else slo}
    return GavelJob(line, job_type, integer("total_steps", 0), arrival, integer("scale_factor", 1), **out)
