"""Observed utilisation: where the adaptive loop learns what jobs really use.

A :class:`MetricsSource` answers ``observe(now)`` with an :class:`Observation`: per node and per job,
the GPU busy time, GPU memory, CPU and memory actually in use, in optalloc's canonical units
(milli-GPU, MiB, milli-cores). Sources:

- :class:`PrometheusSource` (:mod:`~optalloc.adaptive.monitor.prometheus`): the Prometheus HTTP API v1
  (``/api/v1/query``, ``/api/v1/query_range``), standard library HTTP only, PromQL configurable per
  quantity (defaults: NVIDIA DCGM exporter, node_exporter, cAdvisor), Prometheus labels mapped to
  optalloc node and job names;
- :class:`LocalSource` (:mod:`~optalloc.adaptive.monitor.local`): this machine through psutil, plus NVML
  (nvidia-ml-py) when a GPU is present;
- :class:`StaticSource` and :class:`ReplaySource` (:mod:`~optalloc.adaptive.monitor.observation`, with
  the vocabulary): fixed or recorded observations, for tests and replays.

A source that cannot answer raises :class:`MonitorError`; :func:`safe_observe` turns that into a stale
observation, which is what the controller expects (it keeps its last plan while data is stale).
"""

from optalloc.adaptive.monitor.local import LocalSource
from optalloc.adaptive.monitor.observation import (
    JobUsage,
    MetricsSource,
    MonitorError,
    NodeUsage,
    Observation,
    ReplaySource,
    StaticSource,
    now,
    safe_observe,
)
from optalloc.adaptive.monitor.prometheus import LabelMap, PrometheusSource, Queries, Query

__all__ = [
    "JobUsage",
    "LabelMap",
    "LocalSource",
    "MetricsSource",
    "MonitorError",
    "NodeUsage",
    "Observation",
    "PrometheusSource",
    "Queries",
    "Query",
    "ReplaySource",
    "StaticSource",
    "now",
    "safe_observe",
]
