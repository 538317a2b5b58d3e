"""What a metrics source answers: usage per node and per job (:class:`Observation`), the
:class:`MetricsSource` protocol, :func:`safe_observe`, and the fixed and recorded sources of tests and
replays (:class:`StaticSource`, :class:`ReplaySource`)."""

from __future__ import annotations

import bisect
import logging
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from optalloc.core import OptallocError

log = logging.getLogger(__name__)

MIB = 1 << 20


class MonitorError(OptallocError):
    """A metrics source could not answer: unreachable, too slow, or an answer that makes no sense."""


# Vocabulary -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeUsage:
    """What a node uses now. None = not measured.

    ``gpu_milli``: GPU busy time summed over the node's GPUs, in milli-GPU (a GPU at 40% counts 400).
    ``gpu_memory``: GPU memory used, MiB, summed over GPUs. ``cpu``: milli-cores busy. ``memory``: MiB
    in use. ``gpus``: how many GPUs reported.
    """

    gpu_milli: float | None = None
    gpu_memory: float | None = None
    cpu: float | None = None
    memory: float | None = None
    gpus: int = 0


@dataclass(frozen=True)
class JobUsage:
    """What a job uses now, summed over its replicas. None = not measured.

    ``gpu_milli``: GPU busy time over the GPUs it runs on (milli-GPU); ``gpus``: how many GPU series were
    attributed to it, so ``gpu_milli / gpus`` is the mean busy milli per GPU. ``gpu_memory``: the
    largest GPU memory used on any one of its GPUs, MiB. ``cpu``: milli-cores; ``memory``: MiB.
    """

    gpu_milli: float | None = None
    gpu_memory: float | None = None
    cpu: float | None = None
    memory: float | None = None
    gpus: int = 0

    @property
    def gpu_milli_per_gpu(self) -> float | None:
        if self.gpu_milli is None or not self.gpus:
            return None
        return self.gpu_milli / self.gpus


@dataclass(frozen=True)
class Observation:
    """Observed usage at ``time`` (seconds, the caller's clock).

    ``stale``: the data could not be refreshed (source down, slow or answering garbage; ``error`` says
    why): the controller must not act on it.
    """

    time: float
    nodes: Mapping[str, NodeUsage] = field(default_factory=lambda: MappingProxyType({}))
    jobs: Mapping[str, JobUsage] = field(default_factory=lambda: MappingProxyType({}))
    stale: bool = False
    error: str = ""

    def __post_init__(self) -> None:
        for name in ("nodes", "jobs"):  # a read-only view is kept as it is (cheap re-stamping with at())
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    @classmethod
    def missing(cls, time: float, error: str) -> Observation:
        """A stale observation: nothing measured, and why."""
        return cls(time, stale=True, error=error)

    def at(self, time: float) -> Observation:
        return replace(self, time=time)


@runtime_checkable
class MetricsSource(Protocol):
    """Anything that reports observed usage; ``now`` is the caller's clock (seconds)."""

    def observe(self, now: float) -> Observation:
        """The latest usage. Raises :class:`MonitorError` when it cannot answer."""
        ...


def safe_observe(source: MetricsSource, now: float) -> Observation:
    """``source.observe(now)``, or a stale observation naming the error when the source fails."""
    try:
        return source.observe(now)
    except MonitorError as err:
        log.warning("metrics source failed, data is stale: %s", err)
        return Observation.missing(now, str(err))


# Test and simulator sources -------------------------------------------------------------------


@dataclass(frozen=True)
class StaticSource:
    """Always the same usage, stamped with the time asked for."""

    observation: Observation

    def observe(self, now: float) -> Observation:
        return self.observation.at(now)


@dataclass(frozen=True)
class ReplaySource:
    """Recorded observations played back: ``observe(now)`` gives the latest one at or before ``now``.

    Older than ``max_age`` seconds (None = never), or none yet, and the answer is stale.
    """

    observations: tuple[Observation, ...]
    max_age: float | None = None

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.observations, key=lambda o: o.time))
        object.__setattr__(self, "observations", ordered)
        object.__setattr__(self, "_times", [o.time for o in ordered])

    def observe(self, now: float) -> Observation:
        k = bisect.bisect_right(self._times, now) - 1  # type: ignore[attr-defined]
        if k < 0:
            return Observation.missing(now, "no recorded observation yet")
        found = self.observations[k]
        if self.max_age is not None and now - found.time > self.max_age:
            return Observation.missing(now, f"latest recorded observation is {now - found.time:.0f}s old")
        return found


# Helpers for the loop -------------------------------------------------------------------------


def now() -> float:
    """Wall-clock seconds since the epoch (what the CLI injects as the controller's clock)."""
    return _time.time()
