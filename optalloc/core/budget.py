"""A solve's budget: the wall-clock deadline, the caller's stop event, and progress reports.

Every stage of one ``solve()`` call (heuristics, presolve, LP, CP-SAT/HiGHS, decoding, repair, the
final verification) draws on the same :class:`Budget`, so that the whole call returns within its time
limit and stops as soon as the caller sets ``stop``. ``on_progress`` receives a :class:`Progress` each
time the incumbent or the bound improves (and on the first report of each): an anytime engine's log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class StopFlag(Protocol):
    """What ``stop=`` accepts: a :class:`threading.Event`, or anything with ``is_set()``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Progress:
    """A report of an anytime solve: ``elapsed`` seconds since it started, the ``engine`` that found
    the news (``best-fit``, ``lp``, ``cpsat``, ``highs``, ``lns``, ...), the best ``objective`` found so
    far and the best proven upper ``bound`` (None while unknown)."""

    elapsed: float
    engine: str
    objective: float | None
    bound: float | None

    @property
    def gap(self) -> float | None:
        """``(bound - objective) / |bound|``, as ``Allocation.gap`` (None unless both are known)."""
        return relative_gap(self.objective, self.bound)


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """The relative gap of ``objective`` to ``bound`` (0 when equal, None when either is unknown)."""
    if objective is None or bound is None:
        return None
    if bound == objective:
        return 0.0
    return max(0.0, (bound - objective) / max(abs(bound), 1e-9))


ProgressCallback = Callable[[Progress], None]


class OutOfTime(Exception):
    """Raised inside an engine stage when its budget has run out or the caller asked to stop.

    Internal: engines catch it around an optional stage and keep the answer they already have; it never
    leaves ``solve()``.
    """


class _Record:
    """What the stages of one solve share: the caller's stop flag and callback, the best objective and
    bound reported so far, and the callback's error if it raised."""

    def __init__(self, stop: StopFlag | None, on_progress: ProgressCallback | None) -> None:
        self.stop = stop
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.failed = threading.Event()
        self.error: Exception | None = None
        self.objective: float | None = None
        self.bound: float | None = None
        self.events: list[Progress] = []
        self.pace = 1.0


class _Either:
    """A stop flag that is set when the parent budget's is (the caller's stop, or its callback failed)."""

    def __init__(self, parent: Budget) -> None:
        self.parent = parent

    def is_set(self) -> bool:
        return self.parent.stopped


class Budget:
    """The time and the stop signal of one solve, shared by its stages (and its threads).

    ``time_limit`` seconds from now (None: no limit); ``stop``: set by the caller (another thread, a
    Ctrl-C handler) to end the solve early with the best answer so far; ``on_progress``: called from the
    thread that found the news, with the incumbent and the bound (monotone: a report never goes back).
    :meth:`narrow` gives a stage the same budget with an earlier deadline (time kept for what follows).
    """

    def __init__(
        self,
        time_limit: float | None = None,
        *,
        stop: StopFlag | None = None,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.start = clock()
        self._end = math.inf if time_limit is None else self.start + float(time_limit)
        self._parent: Budget | None = None
        self._keep = 0.0
        self._record = _Record(stop, on_progress)

    def narrow(self, keep: float) -> Budget:
        """This budget (same start, stop flag and progress) ending ``keep`` seconds earlier.

        ``keep`` is a forecast of the work that follows on an unloaded machine: it stretches with
        :attr:`pace` (a machine running at a third of its speed keeps three times as long)."""
        child = Budget.__new__(Budget)
        child.clock = self.clock
        child.start = self.start
        child._end = math.inf
        child._parent = self
        child._keep = max(0.0, keep)
        child._record = self._record
        return child

    def detached(self, keep: float = 0.0, *, within: float | None = None) -> Budget:
        """A budget with this one's deadline (less ``keep`` seconds) and stop flag, but its own progress
        record: for sub-problems whose objective and bound are not the solve's (they are not reported).
        ``within``: it ends at the latest that many seconds from now (clock seconds: not stretched by the
        pace, unlike ``keep``)."""
        child = self.narrow(keep)
        if within is not None:
            child._end = self.clock() + max(0.0, within)
        child._record = _Record(_Either(self), None)
        child._record.pace = self.pace
        return child

    @property
    def deadline(self) -> float:
        """The clock time this budget ends at (``inf`` without a limit)."""
        if self._parent is None:
            return self._end
        return min(self._end, self._parent.deadline - self._keep * self.pace)

    def deadline_at(self, pace: float) -> float:
        """The deadline this budget would have at ``pace`` (what each stage keeps for later stretched by it):
        for work planned now that must end before the deadline even if the pace rises to that."""
        if self._parent is None:
            return self._end
        return min(self._end, self._parent.deadline_at(pace) - self._keep * pace)

    @property
    def time_limit(self) -> float:
        """The caller's time limit: seconds from the start to the first budget's deadline, before any
        :meth:`narrow` kept time back (``inf`` without a limit)."""
        root = self
        while root._parent is not None:
            root = root._parent
        return root._end - root.start

    # Pace ------------------------------------------------------------------------------------
    @property
    def pace(self) -> float:
        """How many times slower than nominal this machine runs the solve now (1.0: as measured
        unloaded; 3.0: a third of a core, say): measured by :meth:`observe_pace`, read by every forecast
        of work that cannot be interrupted (the time kept for verifying, building a model...)."""
        return self._record.pace

    def observe_pace(self, nominal: float, actual: float) -> None:
        """Record that work forecast at ``nominal`` seconds took ``actual`` (ignored below 20 ms of
        nominal work: too short to tell load from noise); the pace is kept within [1, 20]."""
        if nominal >= 0.02 and actual > 0:
            self._record.pace = min(20.0, max(1.0, actual / nominal))

    # Time ------------------------------------------------------------------------------------
    @property
    def limited(self) -> bool:
        return self.deadline < math.inf

    @property
    def stop(self) -> StopFlag | None:
        return self._record.stop

    @property
    def on_progress(self) -> ProgressCallback | None:
        return self._record.on_progress

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left before the deadline (``inf`` without a limit; 0 once stopped)."""
        if self.stopped:
            return 0.0
        return self.deadline - self.clock()

    @property
    def stopped(self) -> bool:
        """Whether the caller asked the solve to stop (or its ``on_progress`` callback failed)."""
        record = self._record
        return record.failed.is_set() or (record.stop is not None and record.stop.is_set())

    def expired(self, reserve: float = 0.0) -> bool:
        """Whether fewer than ``reserve`` seconds are left (or the caller asked to stop)."""
        return self.left() <= reserve

    def check(self, reserve: float = 0.0) -> None:
        """Raise :class:`OutOfTime` once fewer than ``reserve`` seconds are left or on stop."""
        if self.expired(reserve):
            raise OutOfTime

    def seconds(self, share: float = 1.0, *, reserve: float = 0.0, cap: float | None = None) -> float | None:
        """A time limit for a sub-stage: ``share`` of what is left after ``reserve``, at most ``cap``
        (None without a deadline and without a cap; never negative)."""
        left = self.left()
        if left == math.inf:
            return cap
        out = max(0.0, (left - reserve) * share)
        return out if cap is None else min(out, cap)

    # Progress --------------------------------------------------------------------------------
    @property
    def objective(self) -> float | None:
        """The best objective reported so far."""
        return self._record.objective

    @property
    def bound(self) -> float | None:
        """The best (lowest) proven bound reported so far."""
        return self._record.bound

    @property
    def events(self) -> list[Progress]:
        return list(self._record.events)

    @property
    def error(self) -> Exception | None:
        return self._record.error

    def improve(self, engine: str, *, objective: float | None = None, bound: float | None = None) -> bool:
        """Record an incumbent ``objective`` and/or a proven ``bound``; report when either improved."""
        record = self._record
        with record.lock:
            better = False
            if objective is not None and (record.objective is None or objective > record.objective):
                record.objective = float(objective)
                better = True
            if bound is not None and math.isfinite(bound) and (record.bound is None or bound < record.bound):
                record.bound = float(bound)
                better = True
            # A proven bound is never below a feasible objective.
            if record.bound is not None and record.objective is not None and record.bound < record.objective:
                record.bound = record.objective
            if not better:
                return False
            event = Progress(round(self.elapsed(), 4), engine, record.objective, record.bound)
            record.events.append(event)
        log.debug("progress %s", event)
        if record.on_progress is not None and not record.failed.is_set():
            try:
                record.on_progress(event)
            except Exception as error:  # the caller's bug: it stops the solve, and solve() raises it again
                record.error = error
                record.failed.set()
        return True
