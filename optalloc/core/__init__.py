"""The vocabulary of optalloc: nodes, jobs, problems, allocations, and the verifier.

Imports nothing else of optalloc and no solver.
"""

from optalloc.core.allocation import Allocation, Changes, Placement, Reason, Status, Unplaced
from optalloc.core.errors import InvalidAllocation, MethodUnavailable, OptallocError, ProblemError, SolverError
from optalloc.core.fragmentation import FragmentationModel, Workload, cluster_fragmentation, node_fragmentation
from optalloc.core.future_value import FutureValue
from optalloc.core.job import MILLI, Job, PlacementRule
from optalloc.core.node import Node
from optalloc.core.objective import ObjectiveValue, ObjectiveWeights, evaluate
from optalloc.core.problem import Problem
from optalloc.core.state import ClusterState
from optalloc.core.summary import Summary, summarize
from optalloc.core.verify import Kind, Violation, verify

__all__ = [
    "MILLI",
    "Allocation",
    "Changes",
    "ClusterState",
    "FragmentationModel",
    "FutureValue",
    "InvalidAllocation",
    "Job",
    "Kind",
    "MethodUnavailable",
    "Node",
    "ObjectiveValue",
    "ObjectiveWeights",
    "OptallocError",
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
    "cluster_fragmentation",
    "evaluate",
    "node_fragmentation",
    "summarize",
    "verify",
]
