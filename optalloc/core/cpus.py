"""How many CPUs this process may use: its affinity mask, not the machine's count.

``os.cpu_count()`` counts the machine's CPUs; a process pinned by ``taskset``, a cgroup cpuset (a
container, a Slurm or Kubernetes CPU allocation) may use fewer. Worker counts (CP-SAT's search threads,
process pools) are sized from :func:`usable_cpus`, so that a job given 2 CPUs on a 64-core machine does
not start 64 threads that fight over 2.
"""

from __future__ import annotations

import os

__all__ = ["usable_cpus"]


def usable_cpus() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity(0)`` where the platform has it, else
    ``os.cpu_count()``), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
