"""This machine's usage: CPU and memory through psutil, GPUs through NVML (both optional, imported when
used: ``pip install optalloc[prom]``)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optalloc.adaptive.monitor.observation import MIB, JobUsage, MonitorError, NodeUsage, Observation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSource:
    """This machine's usage, as node ``node`` (default: the host name).

    CPU and memory through psutil (the CPU figure is the busy share since the previous call, so the
    first call of a process reads 0). GPUs through NVML (the ``nvidia-ml-py`` package, module
    ``pynvml``) when it imports and finds a GPU; otherwise no GPU quantities. ``job_pids`` maps job
    names to the process ids that belong to them: their CPU, resident memory and NVML GPU memory make
    the job's usage. Raises :class:`MonitorError` when psutil is not installed.
    """

    node: str = field(default_factory=socket.gethostname)
    job_pids: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    use_nvml: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_pids", MappingProxyType({k: tuple(v) for k, v in self.job_pids.items()}))

    def observe(self, now: float) -> Observation:
        try:
            import psutil
        except ImportError as err:
            raise MonitorError("LocalSource needs psutil (pip install optalloc[prom])") from err
        cores = psutil.cpu_count() or 1
        busy = psutil.cpu_percent(interval=None) / 100.0 * cores * 1000.0
        vm = psutil.virtual_memory()
        node = {"cpu": busy, "memory": (vm.total - vm.available) / MIB}
        gpu_by_pid: dict[int, float] = {}
        if self.use_nvml:
            node.update(_nvml_usage(gpu_by_pid))
        jobs: dict[str, JobUsage] = {}
        for job, pids in self.job_pids.items():
            cpu = mem = 0.0
            gpu_mem: float | None = None
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    cpu += proc.cpu_percent(interval=None) * 10.0  # percent of one core -> milli-cores
                    mem += proc.memory_info().rss / MIB
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if pid in gpu_by_pid:
                    gpu_mem = max(gpu_mem or 0.0, gpu_by_pid[pid])
            jobs[job] = JobUsage(cpu=cpu, memory=mem, gpu_memory=gpu_mem)
        return Observation(now, {self.node: NodeUsage(**node)}, jobs)


def _nvml_usage(gpu_by_pid: dict[int, float]) -> dict[str, Any]:
    """NVML figures of every GPU of this machine (empty when NVML or a GPU is absent)."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:  # no driver, no GPU: no GPU quantities
        log.debug("NVML unavailable: %s", err)
        return {}
    try:
        count = pynvml.nvmlDeviceGetCount()
        util = used = 0.0
        for i in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            util += float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu) * 10.0
            used += float(pynvml.nvmlDeviceGetMemoryInfo(handle).used) / MIB
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.usedGpuMemory is not None:
                    gpu_by_pid[proc.pid] = max(gpu_by_pid.get(proc.pid, 0.0), proc.usedGpuMemory / MIB)
        return {"gpu_milli": util, "gpu_memory": used, "gpus": count} if count else {}
    except pynvml.NVMLError as err:  # a device query failed: the source cannot answer
        raise MonitorError(f"NVML failed: {err}") from err
    finally:
        with contextlib.suppress(pynvml.NVMLError):  # shutting down a half-initialised NVML is best effort
            pynvml.nvmlShutdown()
