"""optalloc: decide where deep-learning jobs run.

Build a :class:`Problem` from :class:`Node` and :class:`Job` objects (or read one with
``optalloc.io``), call :func:`solve`, and check any answer with :func:`verify`.
"""

from optalloc.core import (
    LIMITS,
    Allocation,
    Changes,
    Job,
    MethodUnavailable,
    Node,
    ObjectiveWeights,
    OptallocError,
    OutputError,
    Placement,
    PlacementRule,
    Problem,
    ProblemError,
    Reason,
    SolverError,
    Status,
    Summary,
    Unplaced,
    Violation,
    verify,
)
from optalloc.core.options import SolveOptions
from optalloc.solve import Method, get_method, methods, preload, register, solve

__version__ = "0.1.0"

__all__ = [
    "LIMITS",
    "Allocation",
    "Changes",
    "Job",
    "Method",
    "MethodUnavailable",
    "Node",
    "ObjectiveWeights",
    "OptallocError",
    "OutputError",
    "Placement",
    "PlacementRule",
    "Problem",
    "ProblemError",
    "Reason",
    "SolveOptions",
    "SolverError",
    "Status",
    "Summary",
    "Unplaced",
    "Violation",
    "__version__",
    "get_method",
    "methods",
    "preload",
    "register",
    "solve",
    "verify",
]
