"""Heterogeneity-aware time sharing: policies over the fraction of time each job spends on each GPU type.

Gavel (Narayanan et al., OSDI'20) poses scheduling policies as programs over an allocation matrix
``X[job, GPU type]`` of time fractions, weighted by measured throughputs: a job's effective throughput
is ``sum_k X[j, k] T[j, k]``. This package has

- the vocabulary: :class:`ShareProblem` (jobs, GPU types, throughputs, gang sizes, capacities,
  priority weights) and :class:`Shares` (the matrix, with the solver's status as data);
- the policies, one file each, by name (:func:`get_policy`, :func:`policy_names`): ``max-min-fairness``,
  ``finish-time-fairness``, ``max-sum-throughput``, ``min-makespan`` (cvxpy programs built once with
  parameters, solved with HiGHS or Clarabel), ``fifo`` and ``srtf`` (lexicographic, solved greedily);
  each also ``-agnostic`` (posed on one pool of GPUs);
- the realisation (:mod:`~optalloc.timeshare.rounds`): every round, integer GPU assignments that
  follow the shares (jobs owed the most time first), placed and verified with optalloc's core;
- :class:`TimeshareScheduler`: the policy and the rounds as one object a driver (the simulator, a
  production loop) feeds with arrivals, completions and observed throughputs.

cvxpy (the ``fair`` extra) is imported only when a convex policy is built. docs/timeshare.md has the
programs in math.
"""

from optalloc.timeshare.problem import POOL, ShareProblem, Shares
from optalloc.timeshare.program import AGNOSTIC, SharePolicy, describe, get_policy, policy_names
from optalloc.timeshare.rounds import RoundConfig, RoundResult, Rounds
from optalloc.timeshare.scheduler import TimeshareScheduler

__all__ = [
    "AGNOSTIC",
    "POOL",
    "RoundConfig",
    "RoundResult",
    "Rounds",
    "SharePolicy",
    "ShareProblem",
    "Shares",
    "TimeshareScheduler",
    "describe",
    "get_policy",
    "policy_names",
]
