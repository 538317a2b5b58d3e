"""Duration tiers: discretised shortest-remaining-first for the controller's solves.

Tiresias (Gu et al., NSDI'19) keeps a few priority queues split by thresholds on a job's service and
serves the queues in order, first-come-first-served within each: most of the gain of shortest-job-first
without trusting each estimate to the second, and no starvation inside a queue. The controller does the
same when it is given thresholds (``ControllerConfig.duration_tiers``): a job's *tier* is the number of
thresholds below its estimated remaining seconds (tier 0 = the shortest jobs); a job with no estimate
ranks with the longest tier. A solve then sees

    priority' = priority * levels + (levels - 1 - tier),     levels = len(thresholds) + 1,

so the user's priorities still dominate, and within one priority the objective's ``priority_base``
makes shorter tiers lexicographically more valuable: a solve fills the cluster with the shortest tiers
first, then packs the longer ones around them, and may preempt a longer-tier job for a shorter-tier one
(within the controller's migration cap). Remaining time: the estimate minus the time run since the last
start for a running job, the whole estimate for a waiting one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from optalloc.core import Job, ProblemError


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """``thresholds`` as a strictly increasing tuple of positive seconds, or a ProblemError."""
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise ProblemError("duration_tiers", thresholds, "is not a sequence of seconds") from None
    if any(not (np.isfinite(t) and t > 0) for t in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise ProblemError("duration_tiers", thresholds, "is not a strictly increasing sequence of positive seconds")
    return values


def tier_of(remaining: float | None, thresholds: Sequence[float]) -> int:
    """How many thresholds lie below ``remaining`` (None: no estimate, the longest tier)."""
    if remaining is None or not np.isfinite(remaining):
        return len(thresholds)
    return int(np.searchsorted(np.asarray(thresholds), remaining, side="left"))


def tiered(jobs: Sequence[Job], remaining: Mapping[str, float | None], thresholds: Sequence[float]) -> tuple[Job, ...]:
    """``jobs`` with the tiered priority the solves see (see the module docstring)."""
    levels = len(thresholds) + 1
    out = []
    for job in jobs:
        tier = tier_of(remaining.get(job.name, job.duration), thresholds)
        out.append(replace(job, priority=job.priority * levels + (levels - 1 - tier)))
    return tuple(out)


def thresholds_for(durations: Sequence[float] | np.ndarray, tiers: int = 4) -> tuple[float, ...]:
    """Thresholds splitting estimated ``durations`` (seconds) into ``tiers`` groups of equal size (their
    quantiles), rounded to the minute; () when there are no positive estimates."""
    values = np.asarray(durations, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values) or tiers < 2:
        return ()
    cuts = np.quantile(values, np.arange(1, tiers) / tiers)
    rounded = sorted({max(60.0, float(np.round(c / 60.0) * 60.0)) for c in cuts})
    return tuple(rounded)
