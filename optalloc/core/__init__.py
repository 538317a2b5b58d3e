"""The vocabulary of optalloc: nodes, jobs, problems, allocations, and the verifier.

Imports nothing else of optalloc and no solver.
"""

from optalloc.core.allocation import Allocation, Changes, Placement, Reason, Status, Unplaced
from optalloc.core.cpus import usable_cpus
from optalloc.core.errors import (
    InvalidAllocation,
    MethodUnavailable,
    OptallocError,
    OutputError,
    ProblemError,
    SolverError,
)
from optalloc.core.fragmentation import FragmentationModel, Workload, cluster_fragmentation, node_fragmentation
from optalloc.core.future_value import FutureValue
from optalloc.core.job import MILLI, Job, PlacementRule
from optalloc.core.limits import LIMITS, Limits
from optalloc.core.node import Node
from optalloc.core.objective import ObjectiveValue, ObjectiveWeights, evaluate
from optalloc.core.problem import Problem
from optalloc.core.running import check_running
from optalloc.core.state import ClusterState
from optalloc.core.summary import Summary, summarize
from optalloc.core.verify import Kind, Violation, verify

__all__ = [
    "LIMITS",
    "MILLI",
    "Allocation",
    "Changes",
    "ClusterState",
    "FragmentationModel",
    "FutureValue",
    "InvalidAllocation",
    "Job",
    "Kind",
    "Limits",
    "MethodUnavailable",
    "Node",
    "ObjectiveValue",
    "ObjectiveWeights",
    "OptallocError",
    "OutputError",
    "Placement",
    "PlacementRule",
    "Problem",
    "ProblemError",
    "Reason",
    "SolverError",
    "Status",
    "Summary",
    "Unplaced",
    "Violation",
    "Workload",
    "check_running",
    "cluster_fragmentation",
    "evaluate",
    "node_fragmentation",
    "summarize",
    "usable_cpus",
    "verify",
]
