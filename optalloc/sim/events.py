"""The simulator's clock: one heap of timestamped events, and the kinds of event it holds.

Events of one timestamp come out together, in the order of their kind (completions, repairs, failures,
arrivals, the tick: capacity freed at ``t`` serves a job arriving at ``t``), then in the order they were
pushed. A payload is an integer: a job index (arrival), a node index (failure, repair), or a job index
and the version of its run (completion: a job stopped and restarted since has a newer version, so the
completion of its old run is recognised as outdated).
"""

from __future__ import annotations

import heapq

# Event kinds, in the order they are handled within one timestamp.
COMPLETION, REPAIR, FAILURE, ARRIVAL, TICK = range(5)

_VERSION_BITS = 20
_VERSION_MASK = (1 << _VERSION_BITS) - 1


def completion_payload(job: int, version: int) -> int:
    """The payload of the completion of ``job``'s run number ``version``."""
    return (job << _VERSION_BITS) + (version & _VERSION_MASK)


def completion_of(payload: int) -> tuple[int, int]:
    """``(job, version)`` of a completion payload (the version modulo 2**20, as :func:`is_current` compares)."""
    return payload >> _VERSION_BITS, payload & _VERSION_MASK


def is_current(version: int, stamped: int) -> bool:
    """Whether a completion stamped ``stamped`` belongs to a job's run number ``version``."""
    return version & _VERSION_MASK == stamped


class EventHeap:
    """Timestamped events ``(time, kind, payload)``; :meth:`pop_at` takes every event of one time."""

    __slots__ = ("heap", "seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, int]] = []  # (time, kind, sequence, payload)
        self.seq = 0

    def __bool__(self) -> bool:
        return bool(self.heap)

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, t: float, kind: int, payload: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, payload))

    @property
    def next_time(self) -> float:
        """The time of the earliest event (the heap must not be empty)."""
        return self.heap[0][0]

    def pop_at(self, t: float) -> list[tuple[int, int]]:
        """Every ``(kind, payload)`` at time ``t``, removed, in handling order."""
        heap = self.heap
        out: list[tuple[int, int]] = []
        while heap and heap[0][0] == t:
            _, kind, _, payload = heapq.heappop(heap)
            out.append((kind, payload))
        return out

    def next_arrival(self) -> float:
        """The time of the earliest arrival still to come (``inf`` when none)."""
        return min((e[0] for e in self.heap if e[1] == ARRIVAL), default=float("inf"))
