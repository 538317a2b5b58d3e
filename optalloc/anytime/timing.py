"""How long the exact program's stages take, forecast before they run, and whether its first answer is
worth waiting for; the time ``solve()`` keeps for verifying an answer.

Each forecast is an unloaded estimate (measured on the openb lists and openb_like at 3,000-20,000
nodes; the figures are in :class:`~optalloc.core.options.PortfolioConfig`), which the callers stretch
by the budget's pace (how much slower than unloaded the simple rules ran just now).
"""

from __future__ import annotations

from optalloc.core import Problem
from optalloc.core.budget import Budget
from optalloc.core.options import PortfolioConfig, SolveOptions

#: Up to this many nodes the program is exact per node (``optalloc.models.exact.EXACT_NODE_LIMIT``).
EXACT_NODES = 24
#: The pace an idle machine measures at most (0.9-1.5: the simple rules' runs vary by half from one
#: machine and one moment to the next); a forecast that holds at pace 1 but not at this one is a coin flip.
IDLE_PACE = 1.5


def first_rule_time(problem: Problem, config: PortfolioConfig, jobs: int | None = None) -> float:
    """Seconds the simple rules take to decide ``jobs`` jobs of ``problem`` (default all) on an unloaded
    machine: the pace's yardstick. ``pace_jobs_per_second`` up to ``pace_nodes`` nodes, each job slower
    beyond by ``pace_per_node`` of its time per node (it scans more of them: first-fit takes 17-22 µs a
    job at 1,213-5,000 nodes, 25 at 10,000 and 33 at 20,000, openb_like on a quiet machine). Measured
    against one speed at every size, an idle machine read a pace of 1.3 at 10,000 nodes and 1.5 at
    20,000, and every forecast stretched by as much."""
    count = len(problem.jobs) if jobs is None else jobs
    grow = 1.0 + config.pace_per_node * max(0, len(problem.nodes) - config.pace_nodes)
    return count / config.pace_jobs_per_second * grow


def exact_setup(problem: Problem, config: PortfolioConfig, *, built: bool = False) -> float:
    """Seconds the exact program needs before its first answer is decoded (compress, build, LP), estimated;
    ``built``: the program is built already (:func:`optalloc.anytime.prepare_early`), only its LP is left."""
    jobs, nodes = len(problem.jobs), len(problem.nodes)
    lp = min(config.lp_max, config.lp_per_job * jobs)
    build = 0.0 if built else config.setup_per_job * jobs + config.setup_per_node * nodes
    return config.min_exact + build + lp


def first_decode(problem: Problem) -> float:
    """Seconds the program's first answer takes to decode (unloaded), estimated."""
    from optalloc.models.exact import DECODE_PER_JOB

    return DECODE_PER_JOB * len(problem.jobs)


def verify_reserve(problem: Problem, time_limit: float | None, config: PortfolioConfig) -> float:
    """Seconds ``solve()`` keeps for verifying an answer of ``problem`` found within ``time_limit``: a
    cost per placement (at most as many as the fastest heuristic places in the time), per job listed and
    per node (measured on the 10k- and 20k-node problems); the cost per placement grows with their number
    (``verify_scale``: at 400,000 placements, 50,000 nodes, each costs three times as much as at a few
    thousand, the objects verify reads no longer fitting the processor's caches)."""
    replicas = int(problem.job_replicas.sum()) if problem.jobs else 0
    placements = replicas if time_limit is None else min(replicas, config.placements_per_second * time_limit)
    return (
        config.verify_base
        + config.verify_per_placement * placements * (1 + placements / config.verify_scale)
        + config.verify_per_job * len(problem.jobs)
        + config.verify_per_node * len(problem.nodes)
    )


def first_answer_fits(
    problem: Problem,
    options: SolveOptions,
    budget: Budget,
    first: float,
    *,
    built: bool,
    ahead: float = 0.0,
    insured: bool = False,
    pace: float | None = None,
) -> bool:
    """Whether the program's first answer is worth waiting for after a first heuristic run of ``first``
    seconds (``ahead``: seconds of it still to run, when asked before it): its setup and first decoding
    (stretched by the pace) must fit in the time left, with time after it that depends on what the
    heuristics would do instead.

    On exact programs (not over node types): time to re-place its selection with the heuristic
    (``finish_factor`` runs). On programs over node types, with ``insured`` (the strong rule places the
    tail of the queue in a child process that goes on beside the program, and the better of the two
    answers wins) its first answer is enough. Without, when the strong rule could place at least half
    the queue in the time left, the program's first answer (an LP rounding, decoded) places less than
    the strong rule (on the openb lists, 5.90M against fgd-plus's 5.96M) and its second vertex more
    (5.99M): it must have time for the second vertex's decoding and one more heuristic run. When the
    strong rule could place less than half, the heuristics' answer is mostly the first rule's, which the
    program's first answer beats (openb_like at 10,000 nodes: +1.7% over first-fit and fgd-plus's tail
    at 5 s): its first answer is enough. ``pace``: the pace to forecast at (default the budget's).
    """
    config = options.portfolio
    pace = budget.pace if pace is None else pace
    decode = pace * first_decode(problem)
    program = pace * exact_setup(problem, config, built=built) + decode
    if len(problem.nodes) <= EXACT_NODES:
        after = config.finish_factor * first
    elif insured or budget.expired(ahead + config.strong_cost * first / 2):
        after = 0.0  # (insured: the program keeps the time to read the child's answer, in anytime._program)
    else:
        after = first + decode
    return not budget.expired(ahead + program + after)


def tail_beside_program(options: SolveOptions, budget: Budget, first: float, *, ahead: float = 0.0) -> bool:
    """Whether the strong rule's tail, placed in a child process, goes on beside the program rather than
    being ended when the program starts: the strong rule cannot place the whole queue in the time left
    (at ``strong_cost`` times the first rule's ``first`` seconds; else it runs whole) but could place
    half of it or more. On less, the program's first answer beats first-fit with that tail (+1.7% on
    openb_like at 10,000 nodes and 5 s) and the child only slows the program down; on more, the tail may
    beat it (the openb lists: the program's first LP rounding places less than fgd-plus on 60-80% of
    the queue), and the better of the two answers wins. ``ahead``: seconds of the first rule's run still
    to come, when asked before it."""
    strong = options.portfolio.strong_cost * first
    return budget.expired(ahead + strong) and not budget.expired(ahead + strong / 2)
