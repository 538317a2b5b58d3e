"""Testing tools for allocators — optalloc's own and yours.

- :mod:`optalloc.testing.strategies`: hypothesis strategies for nodes, clusters, jobs, problems and
  (valid or deliberately broken) allocations. Needs ``hypothesis`` (in the ``dev`` extra); import it
  as ``from optalloc.testing import strategies``.
- :mod:`optalloc.testing.invariants`: checks to call from your tests (``assert_valid``,
  ``assert_no_job_lost``, ``assert_optimal_dominates``, ...), re-exported here.
- :func:`brute_force`: the proven optimum of a tiny problem by exhaustive search, independent of
  optalloc's engines — the reference the conformance suite holds every method to.

See docs/testing.md.
"""

from optalloc.testing._bruteforce import SearchTooLarge, brute_force
from optalloc.testing.invariants import (
    assert_bound_holds,
    assert_monotone_in_capacity,
    assert_no_job_lost,
    assert_optimal_dominates,
    assert_permutation_invariant,
    assert_roundtrip,
    assert_same_problem,
    assert_valid,
    objective,
)

__all__ = [
    "SearchTooLarge",
    "assert_bound_holds",
    "assert_monotone_in_capacity",
    "assert_no_job_lost",
    "assert_optimal_dominates",
    "assert_permutation_invariant",
    "assert_roundtrip",
    "assert_same_problem",
    "assert_valid",
    "brute_force",
    "objective",
]
