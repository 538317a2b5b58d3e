"""Size limits: how large an input optalloc accepts, checked before any array is built.

A small file must never make optalloc allocate gigabytes or run for hours: a node with a billion GPUs,
a job with a billion replicas, ``--add-like n0=100000000`` or a YAML alias bomb are refused with one
:class:`~optalloc.core.errors.ProblemError` naming the field, before any array or object list of that
size exists. The limits are far above any real cluster (docs/limits.md gives each one's reason and the
memory it bounds); they are constants, the same for every caller, so that a file accepted on one
machine is accepted on every other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["LIMITS", "Limits"]


@dataclass(frozen=True)
class Limits:
    """The limits optalloc enforces (see :data:`LIMITS` for the values and docs/limits.md for why).

    - ``nodes`` / ``jobs``: per problem (a file, a trace, a what-if, a simulated cluster);
    - ``gpus_per_node``: GPUs of one node (today's largest servers have 8 or 16);
    - ``replicas`` per job, ``total_replicas`` per problem (every engine works per replica);
    - ``quantity``: any integer amount (CPU milli-cores, memory MiB, GPU memory, GPUs per replica,
      objective weights), so that sums over a whole problem stay inside 64-bit integers;
    - ``priority``: the magnitude of a job's priority; ``seconds``: of an arrival or duration;
    - ``name_length``: characters of a node, job, GPU model or label name or value (Kubernetes'
      object name limit); control characters are refused in names too;
    - ``file_bytes``: of one input file (problem, allocation, CSV, trace);
    - ``nesting``: levels of lists and mappings in a problem or allocation file (they need 6);
    - ``alias_values``: values YAML aliases may add to a document (what an alias bomb inflates);
    - ``workers``: CP-SAT search threads of one solve.
    """

    nodes: int = 100_000
    jobs: int = 1_000_000
    gpus_per_node: int = 64
    replicas: int = 10_000
    total_replicas: int = 2_000_000
    quantity: int = 2**40
    priority: int = 10**9
    seconds: float = 1e12
    name_length: int = 253
    file_bytes: int = 256 * 1024 * 1024
    nesting: int = 32
    alias_values: int = 1_000_000
    workers: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The limits in force (constants: nothing reads them from the environment or a file).
LIMITS = Limits()
