"""Long work that Ctrl-C stops promptly, keeping what it finished.

The work runs in a worker thread while the main thread waits in short steps: Python delivers
SIGINT to the main thread only, between bytecodes, so a main thread blocked inside a solver's C++ call
would hear Ctrl-C only when the call returns. Waiting in steps, it hears it at once
(``KeyboardInterrupt``), asks the work to stop (``on_interrupt``: set a ``threading.Event`` the work
checks), and waits for the work to return what it has. A second Ctrl-C while waiting leaves at once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Seconds between two checks for Ctrl-C while the work runs.
STEP = 0.1


class Interrupted(Exception):
    """Raised by a command that Ctrl-C stopped, after it kept what it had: ``optalloc.cli.main`` prints
    the message as one ``error:`` line and exits with status 130."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What the work returned, and whether Ctrl-C stopped it (then the value is what it had so far)."""

    value: T
    interrupted: bool


def run_interruptibly(
    work: Callable[[], T],
    *,
    on_interrupt: Callable[[], None],
    waiting: Callable[[], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> Outcome[T]:
    """Run ``work()`` in a worker thread; on Ctrl-C call ``on_interrupt()`` (then ``waiting()``, to say
    so) and wait for ``work`` to return. Exceptions of the work are raised here, in the caller's thread.
    A second Ctrl-C while waiting ends the process at once with status 130 (``interrupted``).
    ``tick()`` is called in the caller's thread every :data:`STEP` seconds while the work runs (to
    redraw a status line: only the main thread writes to the terminal)."""
    box: dict[str, object] = {}
    # Waiting on an Event, not on Thread.join: a join interrupted by Ctrl-C may leave the thread marked
    # as stopped while it still runs (CPython bpo-45274); the Event is set only when the work returned.
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed over to the caller's thread and raised there, not swallowed
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name="optalloc-work", daemon=True)
    worker.start()
    interrupted = False
    try:
        while not done.wait(STEP):
            if tick is not None:
                tick()
    except KeyboardInterrupt:
        interrupted = True
        on_interrupt()
        if waiting is not None:
            waiting()
        try:
            while not done.wait(STEP):
                pass
        except KeyboardInterrupt:
            _leave_now()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return Outcome(box["value"], interrupted)  # type: ignore[arg-type]


def _leave_now() -> None:
    """A second Ctrl-C: say so and exit without waiting for the work (nor for the interpreter to tidy
    up after a solver's threads)."""
    try:
        sys.stderr.write("\nerror: interrupted again: stopped without waiting for the work\n")
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(130)
