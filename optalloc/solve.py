"""One entry point: ``solve(problem, method=..., ...)`` over a registry of engines.

Engines are registered by name (a heuristic per placement rule, the exact models, the portfolio);
an unknown name raises :class:`MethodUnavailable` listing the valid ones, and an engine whose optional
dependency is missing says so instead of failing at import. Every answer is verified before it is
returned.

A time limit is a contract: ``solve`` returns within it (the verification included), stops early when
the caller sets ``stop``, and reports the incumbent and the bound as they improve to ``on_progress``.
The built-in engines draw on one :class:`~optalloc.core.budget.Budget` for all their stages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from optalloc.core import (
    Allocation,
    MethodUnavailable,
    Placement,
    Problem,
    ProblemError,
    Reason,
    SolverError,
    Unplaced,
    check_running,
    verify,
)
from optalloc.core.budget import Budget, ProgressCallback, StopFlag
from optalloc.core.options import SolveOptions

log = logging.getLogger(__name__)

Engine = Callable[..., Allocation]


@dataclass(frozen=True)
class Method:
    """A registered engine: ``run(problem, options) -> Allocation``, or with ``budgeted=True``
    ``run(problem, options, budget)``: it then keeps the :class:`~optalloc.core.budget.Budget`'s
    deadline itself, stops when the caller's stop flag is set and reports its progress there.
    """

    name: str
    run: Engine
    kind: str  # "heuristic", "exact", "bound" or "portfolio"
    description: str
    requires: tuple[str, ...] = ()  # importable modules it needs
    preload: tuple[str, ...] = ()  # heavy modules imported before the clock starts (not part of the time limit)
    budgeted: bool = False  # run takes the budget as a third argument

    def call(self, problem: Problem, options: SolveOptions, budget: Budget) -> Allocation:
        """Run the engine on ``problem`` within ``budget``."""
        if self.budgeted:
            return self.run(problem, options, budget)
        answer = self.run(problem, options)
        budget.improve(
            self.name, objective=answer.objective if answer.status.has_solution else None, bound=answer.bound
        )
        return answer

    def available(self) -> bool:
        """Whether the optional modules it needs import (tried, not assumed)."""
        for module in self.requires:
            try:
                __import__(module)
            except ImportError:
                return False
        return True


_REGISTRY: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    """Add an engine to the registry (a user's own engine too); names are unique."""
    if method.name in _registry() and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def methods(kind: str | None = None, *, available_only: bool = False) -> list[Method]:
    """Registered engines, optionally of one kind, in registration order."""
    out = [m for m in _registry().values() if kind is None or m.kind == kind]
    return [m for m in out if m.available()] if available_only else out


def get_method(name: str) -> Method:
    registry = _registry()
    if name not in registry:
        valid = ", ".join(registry)
        raise MethodUnavailable(f"unknown method {name!r}; valid methods: {valid}")
    method = registry[name]
    if not method.available():
        raise MethodUnavailable(f"method {name!r} needs {', '.join(method.requires)}, which is not installed")
    return method


_reason = attrgetter("reason")


def solve(
    problem: Problem,
    method: str = "auto",
    *,
    previous: Allocation | None = None,
    options: SolveOptions | None = None,
    stop: StopFlag | None = None,
    on_progress: ProgressCallback | None = None,
    **option_values: Any,
) -> Allocation:
    """Allocate ``problem`` with ``method`` and return a verified :class:`Allocation`.

    Options are :class:`SolveOptions` fields, given one by one (``time_limit=1.0, seed=7``) or as
    ``options=``. ``previous``: an allocation already decided (a rolling batch): its placements are
    kept as they are, unless ``allow_migration=True``, and the other jobs are placed around them.

    ``time_limit`` bounds the wall time of the whole call (the verification included). ``stop``: a
    :class:`threading.Event` (or anything with ``is_set()``) that another thread sets to end the solve
    early; the best answer found so far is returned, with ``stats["stopped"] = True``. Nothing of the
    solve runs after it returns. ``on_progress``: called with a :class:`~optalloc.core.budget.Progress`
    (elapsed, engine, objective, bound) each time the incumbent or the bound improves, from the thread
    that found it; an exception it raises stops the solve and is raised again here.
    """
    if not isinstance(problem, Problem):
        raise ProblemError("problem", type(problem).__name__, "is not a Problem")
    if not isinstance(method, str):
        raise ProblemError("method", method, "is not a method name (see optalloc.solve.methods())")
    if previous is not None and not isinstance(previous, Allocation):
        raise ProblemError("previous", previous, "is not an Allocation (the last answer) or None")
    if options is not None and not isinstance(options, SolveOptions):
        raise ProblemError("options", options, "is not a SolveOptions")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise ProblemError("stop", type(stop).__name__, "has no is_set() (pass a threading.Event)")
    if on_progress is not None and not callable(on_progress):
        raise ProblemError("on_progress", type(on_progress).__name__, "is not callable")
    opts = options if options is not None else SolveOptions()
    if option_values:
        opts = SolveOptions.from_dict({**opts.to_dict(), **option_values})
    # What runs now is the caller's input: one that cannot run, or (when the answer is verified) one that
    # no longer fits where it runs, is a ProblemError naming the placement, not an engine failure. (No
    # engine is trusted to move such a job: each may answer with a heuristic's placement, which keeps it.)
    if previous is not None:
        with_previous(problem, previous, fits=opts.verify)
    elif problem.current is not None:
        check_running(problem, problem.current, "problem.current", fits=opts.verify)
    engine = get_method(method)
    preload(engine.name)
    # The clock starts once the input is checked and the engines are imported: the engines' decisions then
    # do not follow how long the checks took (deterministic mode repeats); a first call pays the imports
    # (about 1.5 s) on top of its time limit, which optalloc.preload() at start-up avoids.
    budget = Budget(opts.time_limit, stop=stop, on_progress=on_progress)
    if previous is not None:
        problem = with_previous(problem, previous)
    from optalloc.anytime import verify_reserve

    # The engine answers early enough for the verification to fit in the time limit too.
    answer = engine.call(
        problem,
        opts,
        budget.narrow(verify_reserve(problem, opts.time_limit, opts.portfolio)) if opts.verify else budget,
    )
    if budget.error is not None:
        raise budget.error
    if budget.stopped:
        answer = answer.replace(stats={**answer.stats, "stopped": True})
    answer = answer.replace(wall_time=budget.elapsed())
    if opts.verify:
        violations = verify(problem, answer)
        if violations:
            shown = "; ".join(str(v) for v in violations[:5])
            raise SolverError(
                f"method {answer.method or method!r} returned an invalid allocation ({len(violations)} violations): {shown}"
            )
    if Reason.HELD_BACK.value in map(_reason, answer.unplaced):
        answer = _recheck_held_back(problem, answer)
    if opts.admission_forecast > 0 and "admission" not in answer.stats and not budget.expired():
        from optalloc.core import ClusterState
        from optalloc.models.future import admission_status

        status = admission_status(problem, ClusterState.of(problem), opts.admission_forecast)
        answer = answer.replace(stats={**answer.stats, "admission": status})
    log.debug("solve %s: %s in %.3fs", answer.method, answer.status.value, answer.wall_time)
    return answer


def preload(method: str = "auto") -> None:
    """Import the modules ``method`` runs on (OR-Tools, SciPy, HiGHS...: about 1.5 s the first time).

    ``solve`` imports them on its first call, before its clock starts: that call takes the imports'
    time on top of ``time_limit``. A scheduler that calls it every cycle with a budget of a second calls
    this once at start-up, so that its first cycle keeps the budget too. Importing ``optalloc`` itself
    imports none of them.
    """
    for module in get_method(method).preload:
        __import__(module)


def _recheck_held_back(problem: Problem, answer: Allocation) -> Allocation:
    """A job held back when it fitted may no longer fit once later jobs took the room: then it is left
    out for insufficient capacity, so that ``held back`` always means "fits what this answer leaves"."""
    from optalloc.core import ClusterState

    state = ClusterState.of(problem, answer)
    out = []
    for u in answer.unplaced:
        if u.reason == Reason.HELD_BACK and not state.fits(problem.job_index[u.job]).any():
            u = Unplaced(u.job, Reason.INSUFFICIENT_CAPACITY, "held back when it fitted; later jobs took the room")
        out.append(u)
    return answer.replace(unplaced=tuple(out))


def with_previous(problem: Problem, previous: Allocation, *, fits: bool = False) -> Problem:
    """``problem`` whose current allocation also holds ``previous``'s placements: the scheduler's cycle.

    ``previous`` is the last cycle's answer, as it is. Its placements of jobs that are no longer jobs
    of ``problem`` are dropped: those jobs finished (``answer.diff(previous, problem)`` lists them as
    ``finished``). So are the placements of a job with a replica on a node that is no longer in the
    problem (the job lost that node: it is placed again, whole). A job running in both
    ``problem.current`` and ``previous`` must run at the same places in both. What remains must be
    something that can run (with ``fits``, also fit where it runs: see
    :func:`optalloc.core.running.check_running`); if not, :class:`ProblemError` names the placement
    (``previous.placements[3]``): it is the caller's input.
    """
    if not isinstance(previous, Allocation):
        raise ProblemError("previous", previous, "is not an Allocation (the last answer) or None")
    current = problem.current
    if current is not None:
        check_running(problem, current, "problem.current", fits=fits)
    jobs, nodes = problem.job_index, problem.node_index
    lost = {p.job for p in previous.placements if p.job in jobs and p.node not in nodes}
    kept = [(i, p) for i, p in enumerate(previous.placements) if p.job in jobs and p.job not in lost]
    placements = list(current.placements) if current is not None else []
    mine = current.by_job() if current is not None else {}
    theirs: dict[str, list[Placement]] = {}
    for _, p in kept:
        theirs.setdefault(p.job, []).append(p)

    def key(p: Placement) -> tuple[str, int, tuple[int, ...], int]:
        return (p.node, p.replica, tuple(sorted(p.gpus)), p.gpu_milli)

    for name, places in theirs.items():
        if name in mine and sorted(mine[name], key=key) != sorted(places, key=key):
            i = next(i for i, p in kept if p.job == name)
            raise ProblemError(
                f"previous.placements[{i}]", name, "runs elsewhere in problem.current (pass one of the two)"
            )
    added = [(i, p) for i, p in kept if p.job not in mine]
    merged = Allocation(tuple(placements) + tuple(p for _, p in added), method="previous", status="feasible")
    try:
        check_running(problem, merged, "previous", fits=fits)
    except ProblemError as err:
        # Name the placement in the caller's own list: current's first, then previous's index.
        rest = err.field.partition(".placements[")[2]
        if rest:
            k = int(rest.rstrip("]"))
            if k < len(placements):
                raise ProblemError(f"problem.current.placements[{k}]", err.value, err.reason) from None
            raise ProblemError(f"previous.placements[{added[k - len(placements)][0]}]", err.value, err.reason) from None
        raise
    return problem.replace(current=merged)


def _registry() -> dict[str, Method]:
    if not _REGISTRY:
        _register_builtins()
    return _REGISTRY


def _register_builtins() -> None:
    from optalloc import anytime, heuristics, pop

    cpsat = ("optalloc.anytime", "optalloc.models.exact", "optalloc.models.cpsat", "optalloc.heuristics")
    cbc = ("optalloc.anytime", "optalloc.models.exact", "optalloc.models.milp", "optalloc.heuristics")
    about = {
        "auto": "heuristics, then CP-SAT hinted with the best of them; the best answer, never worse than the heuristics",
        "cpsat": "compressed integer program solved by OR-Tools CP-SAT, with a proven bound",
        "milp": "the same program through PuLP and CBC (cross-check)",
        "milp-highs": "the same program through HiGHS branch-and-bound (cross-check)",
        "lp-bound": "best heuristic answer with the LP-relaxation ceiling as its bound (gap of the heuristic)",
        "pop": "k scaled copies of the problem solved in parallel (Ray or local processes), merged and repaired",
    }
    exact = [
        Method("auto", anytime.auto, "portfolio", about["auto"], preload=cpsat, budgeted=True),
        Method("cpsat", anytime.exact_engine("cpsat"), "exact", about["cpsat"], preload=cpsat, budgeted=True),
        Method("milp", anytime.exact_engine("cbc"), "exact", about["milp"], preload=cbc, budgeted=True),
        Method(
            "milp-highs",
            anytime.exact_engine("highs"),
            "exact",
            about["milp-highs"],
            requires=("highspy",),
            preload=cpsat,
            budgeted=True,
        ),
        Method("lp-bound", anytime.lp_bound_engine, "bound", about["lp-bound"], preload=cpsat, budgeted=True),
        Method("pop", pop.engine, "partitioned", about["pop"], preload=(*cpsat, "optalloc.pop"), budgeted=True),
    ]
    for method in exact:
        _REGISTRY[method.name] = method
    for rule in heuristics.RULES:
        _REGISTRY[rule] = Method(
            rule, anytime.heuristic_engine(rule), "heuristic", heuristics.describe(rule), budgeted=True
        )
