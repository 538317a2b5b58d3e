"""SolveOptions: every knob of one solve() call, in one frozen, serialisable object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from optalloc.core import _check
from optalloc.core.cpus import usable_cpus
from optalloc.core.errors import ProblemError
from optalloc.core.limits import LIMITS


@dataclass(frozen=True)
class PortfolioConfig:
    """How an anytime solve divides its budget (seconds are wall-clock).

    ``warm_start_share``: the share of the budget that ``auto``'s heuristic candidates beyond the first
    may use while the exact program still has time to run (all of it when the program cannot run).
    ``scratch_rule``: for plans from scratch (nothing runs yet, no fragmentation guide), the first
    heuristic of ``auto``'s portfolio (in the caller's order) and the warm start of ``cpsat`` and
    ``milp``: first-fit places 1.3-1.7% more GPU than best-fit on the three openb lists and on
    openb_like at 200-3,000 nodes, seeds 1-3 (docs/anytime.md); None: the ``warm_start`` rule.
    Online solves (something runs) always start with ``warm_start``.
    ``strong_rule``: for plans from scratch, the heuristic that usually places the most (fgd-plus on the
    openb lists), run second when the time left holds ``strong_cost`` times what the first heuristic took
    (its cost relative to first-fit: 4.5-5.3 on the three openb lists, 4.0 on 10,000 nodes, alone; about
    6 in a child process beside the parent's runs, on the openb default list at 1 s) and, when the
    program can run, twice that and the program's expected time. When it cannot place every job in
    the time left and the program cannot run, the first rule places the head of the queue and the
    strong rule the rest, on ``strong_fill`` of the time left (at ``strong_cost`` per job), if that
    leaves it at least ``strong_tail`` of the queue: on the openb default and multigpu50 lists, the
    strong rule on the last half of the pods places 0.5-0.7% more than fgd at two thirds of its cost.
    ``strong_fill_alone`` replaces ``strong_fill`` when the program is not expected to run at all (the
    tail's answer is then likely the answer, and nothing else needs the second CPU; the hand-back keeps the
    deadline): on the openb default list at 0.5 s on a fast machine (fgd 0.45 s), 0.95 places
    5.885-5.900M in 8 of 8 runs against 5.865-5.882M with 0.8 and fgd's 5.885M; beside the program
    (multigpu50 at 1 s) 0.95 let the program answer best in 2 of 8 runs against 6 of 8 with 0.8.
    ``min_exact``: the fewest seconds worth starting the exact program with, beyond its setup (compressing
    the problem and building the program: ``setup_per_job`` x jobs + ``setup_per_node`` x nodes seconds;
    solving its LP relaxation: ``lp_per_job`` x jobs, at most ``lp_max`` seconds — the program grows with
    the kinds of jobs and nodes, not their numbers; measured on the openb lists and on openb_like problems
    of 3,000, 10,000 and 20,000 nodes: the first answer comes 0.46-0.58 s, 0.85 s, 2.3 s and 4.9 s after
    the first rule's run on a quiet machine, the build taking 0.1, 0.2, 0.5 and 0.9 s and the LP
    0.25-0.40 s; on a slower day, 0.75 s on the openb lists and 2.6 s at 10,000 nodes).
    ``early_bound_from``: budgets of at least this many seconds start with the pooled-capacity bound,
    when its forecast, ``bound_base`` + ``bound_per_job`` x jobs seconds (stretched by the pace; measured
    on a problem whose arrays are not built yet, as every scheduling cycle's is: 17-19 ms on the openb
    lists, 0.09 s on 70,000 jobs, 0.17-0.18 s on 150,000), is at most a third of the time left; else
    with the jobs' total value, a weaker bound (``bound_base`` + ``value_bound_per_job`` x jobs).
    ``search_share``: on programs over node types (more than 24 nodes), the share of the time
    left once the first LP rounding is decoded that CP-SAT gets; the large neighbourhood search gets the
    rest. 0 by default: on the openb lists CP-SAT's answers on the aggregated program decode no better
    than the LP roundings (docs/benchmarks.md), while the search gains steadily.
    ``finish_factor``: time kept back for the fill pass and the re-placing of the program's selection,
    as a multiple of what the first heuristic took (each is about one heuristic run).
    ``verify_base`` + ``verify_per_placement`` x placements + ``verify_per_job`` x jobs +
    ``verify_per_node`` x nodes: the time ``solve()`` keeps for verifying the answer, with at most
    ``placements_per_second`` x the time limit placements (an estimate; the verification itself is not
    cut short), the cost per placement growing by its value at ``verify_scale`` placements more (the
    verification of 400,000 placements on 50,000 nodes took 2.3-3.4 s, three times the cost per
    placement of 10,000 nodes).
    ``pace_jobs_per_second``: how many jobs the simple rules (best-fit, first-fit, worst-fit) decide per
    second on an unloaded machine; a run that takes longer tells the solve its :attr:`Budget.pace
    <optalloc.core.budget.Budget.pace>` (how loaded the machine is now), and the estimates above stretch
    with it, so that a budget is kept on a shared machine too. Beyond ``pace_nodes`` nodes each job
    takes longer by ``pace_per_node`` of its time per node (the rules scan more nodes: first-fit 25 µs
    a job at 10,000 nodes and 33 at 20,000 against 20 at 5,000; ``optalloc.anytime.timing.first_rule_time``).
    """

    warm_start_share: float = 0.25
    scratch_rule: str | None = "first-fit"
    strong_rule: str = "fgd-plus"
    strong_cost: float = 6.0
    strong_fill: float = 0.8
    strong_fill_alone: float = 0.95
    strong_tail: float = 0.2
    min_exact: float = 0.05
    setup_per_job: float = 6e-6
    setup_per_node: float = 20e-6
    lp_per_job: float = 60e-6
    lp_max: float = 0.45
    early_bound_from: float = 0.4
    bound_base: float = 0.005
    bound_per_job: float = 1.3e-6
    value_bound_per_job: float = 0.5e-6
    search_share: float = 0.0
    finish_factor: float = 2.0
    verify_base: float = 0.003
    verify_per_placement: float = 1.7e-6
    verify_per_job: float = 0.4e-6
    verify_per_node: float = 2e-6
    verify_scale: float = 200_000.0
    placements_per_second: float = 40_000.0
    pace_jobs_per_second: float = 50_000.0
    pace_nodes: int = 5_000
    pace_per_node: float = 4.5e-5


#: Where the ``pop`` method runs its parts: Ray when running or asked for, else a local process pool ("auto").
EXECUTORS = ("auto", "ray", "local", "serial")


@dataclass(frozen=True)
class SolveOptions:
    """Options of one ``solve()`` call.

    ``time_limit`` seconds of wall time for the exact engines (None = no limit); ``workers`` CP-SAT
    search workers (None = the CPUs this process may use, :func:`~optalloc.core.cpus.usable_cpus`); ``seed`` for every randomised choice;
    ``relative_gap`` stops the exact engines once ``(bound - objective) / bound`` is at most this;
    ``deterministic`` makes CP-SAT repeatable run to run (a deterministic time limit, and one worker
    unless ``workers`` says otherwise); ``order`` is the queue ordering of the heuristics; ``round``
    the scheduling round (round-robin rotates by it); ``allow_migration`` lets engines move or
    preempt running preemptible jobs at the migration cost (otherwise what runs stays where it runs);
    ``verify`` re-checks every answer (solve raises SolverError on a violation: an engine bug).
    ``fragmentation_guide`` (0 = off) steers the exact engines' search towards placements that grow the
    FGD fragmentation least (milli-GPU of value per milli-GPU of fragmentation growth, e.g. 0.05): for
    callers deciding arrivals in batches. It does not change how answers are scored; with it on, the
    bound reported is the LP relaxation's. ``warm_start``: the heuristic placement rule whose answer
    ``auto`` hints CP-SAT with (and falls back to); ``fgd-plus`` suits online batches.
    ``admission_forecast`` (0 = off: every job that fits is worth placing) is the demand still expected
    after this call, as a multiple of the free GPU capacity (e.g. 1.3 on a cluster whose queue keeps
    30% more work than it can hold): the exact engines then value the capacity an allocation leaves by
    what that demand could still place there (``optalloc.models.future``), and may hold back a job that
    fits (reason ``held back``) rather than let it strand a GPU that whole-GPU jobs would fill.
    ``parts``, ``inner``, ``executor``, ``ray_address``: the ``pop`` method (``optalloc.pop``) splits the
    problem into ``parts`` scaled copies solved with ``inner`` on ``executor`` (``auto``: Ray when it is
    running here or ``ray_address`` names a cluster, else a local process pool; ``ray``, ``local``,
    ``serial``).
    ``portfolio``: how an anytime solve divides its budget (:class:`PortfolioConfig`; defaults measured
    on this project's benchmarks, documented field by field).
    """

    time_limit: float | None = 10.0
    workers: int | None = None
    seed: int = 0
    relative_gap: float = 0.0
    deterministic: bool = False
    order: str = "fcfs"
    round: int = 0
    allow_migration: bool = False
    verify: bool = True
    log_search: bool = False
    fragmentation_guide: float = 0.0
    warm_start: str = "best-fit"
    admission_forecast: float = 0.0
    parts: int = 4
    inner: str = "auto"
    executor: str = "auto"
    ray_address: str | None = None
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)

    def __post_init__(self) -> None:
        _check.real("time_limit", self.time_limit, minimum=0, optional=True)
        if self.time_limit is not None and self.time_limit <= 0:
            raise ProblemError("time_limit", self.time_limit, "is not a positive number of seconds")
        if self.workers is not None:
            _check.integer("workers", self.workers, minimum=1, maximum=LIMITS.workers)
        _check.integer("seed", self.seed, minimum=None, maximum=2**31 - 1)  # CP-SAT's seed is a 32-bit integer
        gap = _check.real("relative_gap", self.relative_gap, minimum=0)
        if gap is not None and gap >= 1:
            raise ProblemError("relative_gap", self.relative_gap, "is not below 1")
        _check.integer("round", self.round)
        _check.real("fragmentation_guide", self.fragmentation_guide, minimum=0)
        _check.real("admission_forecast", self.admission_forecast, minimum=0)
        if not isinstance(self.warm_start, str) or not self.warm_start:
            raise ProblemError("warm_start", self.warm_start, "is not a heuristic rule name")
        if not isinstance(self.order, str):
            raise ProblemError("order", self.order, "is not a queue ordering name")
        _check.integer("parts", self.parts, minimum=1)
        if not isinstance(self.inner, str) or not self.inner or self.inner == "pop":
            raise ProblemError("inner", self.inner, "is not a method name to solve the parts with (not pop)")
        if self.executor not in EXECUTORS:
            raise ProblemError("executor", self.executor, f"is not one of {', '.join(EXECUTORS)}")
        if not isinstance(self.portfolio, PortfolioConfig):
            raise ProblemError("portfolio", self.portfolio, "is not a PortfolioConfig")
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address):
            raise ProblemError("ray_address", self.ray_address, "is not a Ray address (host:port or 'auto')")

    @property
    def num_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return 1 if self.deterministic else usable_cpus()

    def replace(self, **changes: Any) -> SolveOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SolveOptions:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ProblemError(f"options.{key}", data[key], f"is not an option (known: {', '.join(sorted(known))})")
        values = dict(data)
        portfolio = values.get("portfolio")
        if isinstance(portfolio, dict):
            names = {f.name for f in fields(PortfolioConfig)}
            for key in portfolio:
                if key not in names:
                    raise ProblemError(f"options.portfolio.{key}", portfolio[key], "is not a portfolio setting")
            values["portfolio"] = PortfolioConfig(**portfolio)
        elif portfolio is not None and not isinstance(portfolio, PortfolioConfig):
            raise ProblemError("options.portfolio", portfolio, "is not a PortfolioConfig or a mapping")
        return cls(**values)
