"""Heuristic allocators: a queue ordering x a placement rule, vectorised with numpy.

``allocate(problem, rule=..., order=...)`` places jobs one at a time (skip-and-continue) and returns
a verified-valid :class:`~optalloc.core.Allocation`. ``Placer`` is the same engine online: place one
job now, release it later (the simulator, rolling batches and the FGD protocol use it).
"""

from optalloc.core.fragmentation import FragmentationModel
from optalloc.heuristics.allocate import allocate
from optalloc.heuristics.fragmentation import typical_workload
from optalloc.heuristics.orders import ORDERS, dominant_share, order
from optalloc.heuristics.placer import Placer
from optalloc.heuristics.registry import RULES, describe, get_rule
from optalloc.heuristics.rules import Rule

__all__ = [
    "ORDERS",
    "RULES",
    "FragmentationModel",
    "Placer",
    "Rule",
    "allocate",
    "describe",
    "dominant_share",
    "get_rule",
    "order",
    "typical_workload",
]
