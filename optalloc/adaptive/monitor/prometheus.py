"""Observed usage from a Prometheus server's HTTP API v1 (standard library HTTP only): the queries per
quantity (:class:`Queries`), how labels name nodes and jobs (:class:`LabelMap`), and
:class:`PrometheusSource`."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optalloc.adaptive.monitor.observation import MIB, JobUsage, MonitorError, NodeUsage, Observation
from optalloc.core import ProblemError


@dataclass(frozen=True)
class Query:
    """A PromQL expression and the factor that turns its sample values into optalloc's unit."""

    promql: str
    scale: float = 1.0


# node_exporter CPU: busy cores per instance; memory: bytes in use. cAdvisor (kubelet) for pods.
_NODE_CPU = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))'
_NODE_MEMORY = "node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes"
_JOB_CPU = 'sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!="",pod!=""}[1m]))'
_JOB_MEMORY = 'sum by (namespace, pod) (container_memory_working_set_bytes{container!="",pod!=""})'


@dataclass(frozen=True)
class Queries:
    """PromQL per quantity; None skips the quantity.

    Defaults: the NVIDIA DCGM exporter's ``DCGM_FI_DEV_GPU_UTIL`` (percent, scaled x10 to milli-GPU)
    and ``DCGM_FI_DEV_FB_USED`` (MiB) per GPU, node_exporter's ``node_cpu_seconds_total`` (cores,
    x1000 to milli-cores) and ``node_memory_MemAvailable_bytes`` (bytes to MiB), and cAdvisor's
    ``container_cpu_usage_seconds_total`` / ``container_memory_working_set_bytes`` per pod. The GPU
    series per job are the DCGM series that carry a pod label.
    """

    node_gpu: Query | None = Query("DCGM_FI_DEV_GPU_UTIL", 10.0)
    node_gpu_memory: Query | None = Query("DCGM_FI_DEV_FB_USED", 1.0)
    node_cpu: Query | None = Query(_NODE_CPU, 1000.0)
    node_memory: Query | None = Query(_NODE_MEMORY, 1.0 / MIB)
    job_gpu: Query | None = Query('DCGM_FI_DEV_GPU_UTIL{pod!=""}', 10.0)
    job_gpu_memory: Query | None = Query('DCGM_FI_DEV_FB_USED{pod!=""}', 1.0)
    job_cpu: Query | None = Query(_JOB_CPU, 1000.0)
    job_memory: Query | None = Query(_JOB_MEMORY, 1.0 / MIB)

    @classmethod
    def dcgm_only(cls) -> Queries:
        """GPU quantities only (no node_exporter, no cAdvisor)."""
        return cls(node_cpu=None, node_memory=None, job_cpu=None, job_memory=None)

    def items(self) -> list[tuple[str, Query]]:
        names = (
            "node_gpu",
            "node_gpu_memory",
            "node_cpu",
            "node_memory",
            "job_gpu",
            "job_gpu_memory",
            "job_cpu",
            "job_memory",
        )
        return [(n, q) for n in names if (q := getattr(self, n)) is not None]


@dataclass(frozen=True)
class LabelMap:
    """How Prometheus labels name optalloc nodes and jobs.

    The node name is the value of the first label of ``node_labels`` present and non-empty (DCGM sets
    ``Hostname``; node_exporter series carry ``instance``, ``host:port``, whose port is dropped when
    ``strip_port``), then renamed through ``nodes`` (Prometheus value -> optalloc name) when listed.
    The job name is the first of ``job_labels`` present (DCGM with Kubernetes mapping sets ``pod``;
    Prometheus renames it ``exported_pod`` when the scrape target has its own ``pod`` label), renamed
    through ``jobs``, else through ``job_pattern``, a regular expression whose group ``job`` extracts the
    job from the pod name (``r"(?P<job>.+)-worker-\\d+$"``); a pod that matches nothing keeps its name.
    ``gpu_label`` tells GPUs apart on one node.
    """

    node_labels: tuple[str, ...] = ("Hostname", "hostname", "node", "kubernetes_node", "nodename", "instance")
    job_labels: tuple[str, ...] = ("pod", "exported_pod")
    gpu_label: str = "gpu"
    strip_port: bool = True
    nodes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    jobs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    job_pattern: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "jobs", MappingProxyType(dict(self.jobs)))
        if self.job_pattern is not None:
            try:
                compiled = re.compile(self.job_pattern)
            except re.error as err:
                raise ProblemError("job_pattern", self.job_pattern, f"is not a regular expression ({err})") from None
            if "job" not in compiled.groupindex:
                raise ProblemError("job_pattern", self.job_pattern, "has no (?P<job>...) group")

    def node_of(self, labels: Mapping[str, str]) -> str | None:
        for label in self.node_labels:
            value = labels.get(label)
            if value:
                if self.strip_port and label == "instance":
                    value = _strip_port(value)
                return self.nodes.get(value, value)
        return None

    def job_of(self, labels: Mapping[str, str]) -> str | None:
        for label in self.job_labels:
            pod = labels.get(label)
            if pod:
                if pod in self.jobs:
                    return self.jobs[pod]
                if self.job_pattern is not None:
                    match = re.match(self.job_pattern, pod)
                    if match and match.group("job"):
                        return match.group("job")
                return pod
        return None


def _strip_port(value: str) -> str:
    if value.startswith("["):  # [ipv6]:port
        return value[1 : value.index("]")] if "]" in value else value
    host, sep, port = value.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else value


Sample = tuple[Mapping[str, str], float]  # (labels, value)


@dataclass(frozen=True)
class PrometheusSource:
    """Observed usage from a Prometheus server's HTTP API v1.

    ``url``: the server's base URL (``http://prometheus:9090``). ``timeout``: seconds per HTTP request
    (also sent as the query's own ``timeout``). ``headers``: extra HTTP headers (e.g. an
    ``Authorization`` bearer token). Each observation runs the :class:`Queries` (identical expressions
    once) and maps series to nodes and jobs with the :class:`LabelMap`. Failures raise
    :class:`MonitorError`: connection refused, no answer within ``timeout``, an HTTP error, a body that
    is not the API's JSON, or an API error.

    An observation where no query returned any series is stale (``error`` says so): a Prometheus that
    has not scraped the exporters yet, or series that the label map cannot name.
    """

    url: str
    queries: Queries = field(default_factory=Queries)
    labels: LabelMap = field(default_factory=LabelMap)
    timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    max_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        try:
            parsed = urllib.parse.urlparse(self.url)
            parsed.port  # noqa: B018 - a port beyond 65535 or not a number raises ValueError here
        except (ValueError, TypeError, AttributeError):  # 'http://[::1' (an unclosed IPv6 address), a port 70000...
            raise ProblemError("url", self.url, "is not an http(s) URL of a Prometheus server") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ProblemError("url", self.url, "is not an http(s) URL of a Prometheus server")
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ProblemError("timeout", self.timeout, "is not a positive number of seconds")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    # Raw API ----------------------------------------------------------------------------------
    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query: ``(labels, value)`` per series (NaN and infinite samples dropped)."""
        params = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._call("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            value = _number(result, promql)
            return [] if value is None else [(MappingProxyType({}), value)]
        if kind != "vector" or not isinstance(result, list):
            raise MonitorError(f"prometheus answered {promql!r} with result type {kind!r}, expected a vector")
        out: list[Sample] = []
        for series in result:
            if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
                raise MonitorError(f"prometheus answered {promql!r} with a malformed series: {_short(series)}")
            value = _number(series.get("value"), promql)
            if value is not None:
                out.append((series["metric"], value))
        return out

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[float, list[Sample]]:
        """A range query: per evaluation time, ``(labels, value)`` per series."""
        if not step > 0 or end < start:
            raise ProblemError("step", step, f"is not a positive step for the range {start}..{end}")
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
            "timeout": f"{self.timeout:g}s",
        }
        data = self._call("/api/v1/query_range", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind != "matrix" or not isinstance(result, list):
            raise MonitorError(f"prometheus answered {promql!r} with result type {kind!r}, expected a matrix")
        out: dict[float, list[Sample]] = defaultdict(list)
        for series in result:
            if not isinstance(series, dict) or not isinstance(series.get("values"), list):
                raise MonitorError(f"prometheus answered {promql!r} with a malformed series: {_short(series)}")
            labels = series.get("metric") or {}
            for pair in series["values"]:
                value = _number(pair, promql)
                if value is not None:
                    out[float(pair[0])].append((labels, value))
        return dict(out)

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={"Accept": "application/json", **self.headers})
        status = 200
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as err:
            status, body = err.code, _read_quietly(err)
        except TimeoutError as err:
            raise MonitorError(f"prometheus at {self.url} did not answer within {self.timeout:g}s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise MonitorError(f"prometheus at {self.url} did not answer within {self.timeout:g}s") from err
            raise MonitorError(f"prometheus at {self.url} is unreachable: {err.reason}") from err
        except (OSError, ValueError) as err:  # connection reset mid-answer, malformed HTTP
            raise MonitorError(f"prometheus at {self.url} failed: {err}") from err
        if len(body) > self.max_bytes:
            raise MonitorError(f"prometheus at {self.url} answered more than {self.max_bytes} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MonitorError(
                f"prometheus at {self.url} answered HTTP {status} with something that is not JSON: {_short(body)}"
            ) from None
        if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
            raise MonitorError(
                f"prometheus at {self.url} answered JSON that is not an API v1 answer: {_short(payload)}"
            )
        if payload["status"] == "error":
            kind, message = payload.get("errorType", "error"), payload.get("error", "")
            raise MonitorError(f"prometheus at {self.url} refused {params.get('query')!r} ({kind}): {message}")
        data = payload.get("data")
        if status != 200 or not isinstance(data, dict):
            raise MonitorError(f"prometheus at {self.url} answered HTTP {status} without data: {_short(payload)}")
        return data

    # Observations -----------------------------------------------------------------------------
    def observe(self, now: float) -> Observation:
        """Usage at ``now`` (seconds since the epoch: Prometheus evaluates the queries at that time)."""
        samples: dict[str, list[Sample]] = {}
        cache: dict[str, list[Sample]] = {}
        for name, q in self.queries.items():
            if q.promql not in cache:
                cache[q.promql] = self.query(q.promql, at=now)
            samples[name] = cache[q.promql]
        return self._assemble(now, samples)

    def history(self, start: float, end: float, step: float) -> list[Observation]:
        """Observations from ``start`` to ``end`` every ``step`` seconds (range queries), oldest first."""
        per_time: dict[float, dict[str, list[Sample]]] = defaultdict(dict)
        cache: dict[str, dict[float, list[Sample]]] = {}
        for name, q in self.queries.items():
            if q.promql not in cache:
                cache[q.promql] = self.query_range(q.promql, start, end, step)
            for t, found in cache[q.promql].items():
                per_time[t][name] = found
        return [self._assemble(t, per_time[t]) for t in sorted(per_time)]

    def _assemble(self, now: float, samples: Mapping[str, list[Sample]]) -> Observation:
        q, labels = self.queries, self.labels
        nodes: dict[str, dict[str, Any]] = defaultdict(dict)
        jobs: dict[str, dict[str, Any]] = defaultdict(dict)
        # Per GPU quantities: one value per (node, gpu) series, summed per node; per job, summed over
        # its GPUs (memory: the largest on one GPU).
        for attr, quantity in (("gpu_milli", "node_gpu"), ("gpu_memory", "node_gpu_memory")):
            query = getattr(q, quantity)
            per_gpu: dict[tuple[str, str], float] = {}
            for metric, value in samples.get(quantity, ()):
                node = labels.node_of(metric)
                if node is not None:
                    key = (node, metric.get(labels.gpu_label, ""))
                    per_gpu[key] = max(per_gpu.get(key, 0.0), value * query.scale)
            for (node, _), value in per_gpu.items():
                nodes[node][attr] = nodes[node].get(attr, 0.0) + value
            if attr == "gpu_milli":
                for node, _ in per_gpu:
                    nodes[node]["gpus"] = nodes[node].get("gpus", 0) + 1
        for attr, quantity in (("cpu", "node_cpu"), ("memory", "node_memory")):
            query = getattr(q, quantity)
            for metric, value in samples.get(quantity, ()):
                node = labels.node_of(metric)
                if node is not None:
                    nodes[node][attr] = nodes[node].get(attr, 0.0) + value * query.scale
        for attr, quantity in (("gpu_milli", "job_gpu"), ("gpu_memory", "job_gpu_memory")):
            query = getattr(q, quantity)
            seen: dict[tuple[str, str | None, str], float] = {}
            for metric, value in samples.get(quantity, ()):
                job = labels.job_of(metric)
                if job is not None:
                    where = (job, labels.node_of(metric), metric.get(labels.gpu_label, ""))
                    seen[where] = max(seen.get(where, 0.0), value * query.scale)
            for (job, _, _), value in seen.items():
                if attr == "gpu_milli":
                    jobs[job]["gpu_milli"] = jobs[job].get("gpu_milli", 0.0) + value
                    jobs[job]["gpus"] = jobs[job].get("gpus", 0) + 1
                else:
                    jobs[job]["gpu_memory"] = max(jobs[job].get("gpu_memory", 0.0), value)
        for attr, quantity in (("cpu", "job_cpu"), ("memory", "job_memory")):
            query = getattr(q, quantity)
            for metric, value in samples.get(quantity, ()):
                job = labels.job_of(metric)
                if job is not None:
                    jobs[job][attr] = jobs[job].get(attr, 0.0) + value * query.scale
        if not nodes and not jobs:
            return Observation.missing(now, "prometheus returned no series for any query (not scraped yet?)")
        return Observation(
            now,
            {name: NodeUsage(**values) for name, values in nodes.items()},
            {name: JobUsage(**values) for name, values in jobs.items()},
        )


def _number(pair: Any, promql: str) -> float | None:
    """The value of a ``[timestamp, "value"]`` pair; None for NaN/Inf; MonitorError when malformed."""
    if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[1], str):
        raise MonitorError(f"prometheus answered {promql!r} with a malformed sample: {_short(pair)}")
    try:
        float(pair[0])
        value = float(pair[1])
    except (TypeError, ValueError):
        raise MonitorError(
            f"prometheus answered {promql!r} with a sample that is not a number: {_short(pair)}"
        ) from None
    return value if math.isfinite(value) else None


def _read_quietly(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read()
    except OSError:
        return b""


def _short(value: Any, limit: int = 120) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
