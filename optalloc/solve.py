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
from typing import Any

from optalloc.core import (
    Allocation,
    MethodUnavailable,
    Problem,
    ProblemError,
    Reason,
    SolverError,
    Unplaced,
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
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise ProblemError("stop", type(stop).__name__, "has no is_set() (pass a threading.Event)")
    if on_progress is not None and not callable(on_progress):
        raise ProblemError("on_progress", type(on_progress).__name__, "is not callable")
    opts = options if options is not None else SolveOptions()
    if option_values:
        opts = SolveOptions.from_dict({**opts.to_dict(), **option_values})
    engine = get_method(method)
    for module in engine.preload:
        __import__(module)
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
    if any(u.reason == Reason.HELD_BACK for u in answer.unplaced):
        answer = _recheck_held_back(problem, answer)
    if opts.admission_forecast > 0 and "admission" not in answer.stats and not budget.expired():
        from optalloc.core import ClusterState
        from optalloc.models.future import admission_status

        status = admission_status(problem, ClusterState.of(problem), opts.admission_forecast)
        answer = answer.replace(stats={**answer.stats, "admission": status})
    log.debug("solve %s: %s in %.3fs", answer.method, answer.status.value, answer.wall_time)
    return answer


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


def with_previous(problem: Problem, previous: Allocation) -> Problem:
    """``problem`` whose current allocation also holds ``previous``'s placements."""
    placements = list(problem.current.placements) if problem.current is not None else []
    held = {p.job for p in placements}
    placements += [p for p in previous.placements if p.job not in held]
    return problem.replace(current=Allocation(tuple(placements), method="previous", status="feasible"))


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
