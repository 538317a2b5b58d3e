"""The vocabulary of the loop's inputs and outputs: events in, plans of actions out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from optalloc.adaptive.drift import Trigger
from optalloc.core import Allocation, Job, Node, Placement
from optalloc.models.horizon import HorizonPlan


class EventKind(StrEnum):
    ARRIVAL = "arrival"
    COMPLETION = "completion"
    NODE_LOST = "node-lost"
    NODE_ADDED = "node-added"


@dataclass(frozen=True)
class Event:
    """Something that happened in the cluster since the last step.

    Build with :meth:`arrival` (a job joins the queue), :meth:`completion` (a job finished, or was
    cancelled while queued), :meth:`node_lost` (a node is gone: its jobs must restart elsewhere) or
    :meth:`node_added`.
    """

    kind: EventKind
    job: Job | None = None
    name: str = ""
    node: Node | None = None

    @classmethod
    def arrival(cls, job: Job) -> Event:
        return cls(EventKind.ARRIVAL, job=job, name=job.name)

    @classmethod
    def completion(cls, job: str) -> Event:
        return cls(EventKind.COMPLETION, name=job)

    @classmethod
    def node_lost(cls, node: str) -> Event:
        return cls(EventKind.NODE_LOST, name=node)

    @classmethod
    def node_added(cls, node: Node) -> Event:
        return cls(EventKind.NODE_ADDED, node=node, name=node.name)


class FallbackReason(StrEnum):
    """Why the fallback heuristic answered instead of the method (``Plan.fallback``)."""

    NO_ANSWER = "no-answer"  # the method found no solution within its time limit (status unknown)
    INFEASIBLE = "infeasible"  # the method proved the window has no solution (status infeasible)
    UNAVAILABLE = "unavailable"  # the method cannot run here: an optional module is missing


class ActionKind(StrEnum):
    START = "start"
    PREEMPT = "preempt"
    MIGRATE = "migrate"
    RESIZE = "resize"


@dataclass(frozen=True)
class Action:
    """One change to carry out: ``kind`` of ``job``, and why.

    ``placements``: where the job runs afterwards (start, migrate, resize); ``previous``: where it ran
    before (preempt, migrate, resize). A preemption of a job whose node was lost is reported too: the
    job no longer runs and waits in the queue again.
    """

    kind: ActionKind
    job: str
    reason: str
    placements: tuple[Placement, ...] = ()
    previous: tuple[Placement, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({p.node for p in self.placements}))

    @property
    def previous_nodes(self) -> tuple[str, ...]:
        return tuple(sorted({p.node for p in self.previous}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "job": self.job,
            "reason": self.reason,
            "placements": [p.to_dict() for p in self.placements],
            "previous": [p.to_dict() for p in self.previous],
        }


@dataclass(frozen=True)
class Plan:
    """The outcome of one step.

    ``allocation``: what runs once the actions are carried out (its ``unplaced`` lists the waiting jobs
    the last solve could not place, with reasons). ``actions``: the changes, each with its reason.
    ``trigger``: why the controller solved (None: it did not). ``method``: the engine whose answer was
    used; ``fallback``: why the fallback heuristic stood in for the method (None: it did not; ``error``
    then says what the method did). ``solve_time``:
    seconds spent solving; ``gap``: the relative gap of the answer when known. ``stale``: the monitoring
    data was stale at this step (drift not acted on). ``horizon``: the horizon model's schedule, when
    used. ``resized``: the new job specs of right-sized jobs.
    """

    time: float
    allocation: Allocation
    actions: tuple[Action, ...] = ()
    trigger: Trigger | None = None
    method: str = ""
    fallback: FallbackReason | None = None
    solve_time: float = 0.0
    gap: float | None = None
    stale: bool = False
    error: str = ""
    horizon: HorizonPlan | None = None
    resized: Mapping[str, Job] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self) -> tuple[Any, ...]:
        # Plans travel back from worker processes and Ray tasks (a simulation's kept plans): the read-only
        # mapping of resized jobs does not pickle, so it travels as a dict and is wrapped again.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["resized"] = dict(self.resized)
        return (_plan_of, (values,))

    def _of(self, kind: ActionKind) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind is kind)

    @property
    def starts(self) -> tuple[Action, ...]:
        return self._of(ActionKind.START)

    @property
    def preemptions(self) -> tuple[Action, ...]:
        return self._of(ActionKind.PREEMPT)

    @property
    def migrations(self) -> tuple[Action, ...]:
        return self._of(ActionKind.MIGRATE)

    @property
    def resizes(self) -> tuple[Action, ...]:
        return self._of(ActionKind.RESIZE)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "trigger": None if self.trigger is None else {"kind": self.trigger.kind, "detail": self.trigger.detail},
            "method": self.method,
            "fallback": None if self.fallback is None else self.fallback.value,
            "solve_time": self.solve_time,
            "gap": self.gap,
            "stale": self.stale,
            "error": self.error,
            "actions": [a.to_dict() for a in self.actions],
            "allocation": self.allocation.to_dict(),
        }


def _plan_of(values: dict[str, Any]) -> Plan:
    return Plan(**{**values, "resized": MappingProxyType(values["resized"])})
