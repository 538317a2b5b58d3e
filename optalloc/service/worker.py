"""The loop's worker process: an :class:`~optalloc.service.engine.Engine` in its own interpreter, so that
the controller's Python work (the window problem, the solve, the verification, the view) never holds the
GIL of the process that answers requests.

:class:`InProcess` is the service's handle (``--loop-in process``, the default). It starts
``python -m optalloc.service.worker FD LEVEL``: a fresh interpreter, as multiprocessing's ``spawn``
would start, but without its helper processes (resource tracker, fork server), so that the worker is
the service's only child. The two talk over a private socket pair, one request and one answer at a
time, pickled by :mod:`optalloc.service.wire`:

- ``("reset", config, snapshot)`` → ``("reset", version)``: the first message; the worker preloads the
  engines of ``config.method`` and ``config.fallback`` (so that the first re-solve keeps its budget)
  and builds the controller's state from the snapshot;
- ``("step", now, observation, events)`` → ``("step", outcome)``;
- ``("stop",)``: the worker exits.

When the worker dies (or does not answer a step within ``step_timeout``), the handle kills what is left
of it, logs why, counts it (``on_restart``) and starts a new one from a fresh snapshot of the service's
nodes, jobs and published plan; the step in flight is lost (its events are in the snapshot). The worker
exits on its own when its socket closes: a service killed with ``kill -9`` leaves no worker behind once
the step in progress, if any, is over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from optalloc.adaptive import ControllerConfig, Event, Observation
from optalloc.service import wire
from optalloc.service.engine import Snapshot, StepOutcome

log = logging.getLogger(__name__)

__all__ = ["InProcess", "main"]


class InProcess:
    """The loop's engine in a worker process (see the module's docstring).

    ``snapshot``: what a (new) worker starts from, taken when it starts. ``stop``: set when the service
    stops (waits are cut short). ``on_restart``: called with the reason each time a worker is replaced.
    ``start_timeout``: seconds a new worker may take to import, preload and reset; ``step_timeout``: seconds
    a step may take before the worker is deemed hung (default: 60 s or 10 budgets, the larger). ``nice``:
    added to the worker's nice value (0-19): on a busy machine the requests get the CPU first, the loop
    takes what is left.
    """

    def __init__(
        self,
        config: ControllerConfig,
        snapshot: Callable[[], Snapshot],
        *,
        stop: threading.Event,
        on_restart: Callable[[str], None] | None = None,
        start_timeout: float = 120.0,
        step_timeout: float | None = None,
        nice: int = 0,
    ) -> None:
        if not 0 <= nice <= 19:
            raise ValueError(f"nice: {nice} is not within 0-19")
        self.config = config
        self.nice = nice
        self.snapshot = snapshot
        self.stopping = stop
        self.on_restart = on_restart
        self.start_timeout = start_timeout
        self.step_timeout = step_timeout if step_timeout is not None else max(60.0, 10 * config.budget)
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._started_once = False
        self._failures = 0
        self._retry_at = 0.0

    @property
    def pid(self) -> int | None:
        """The worker's process id (None: no worker runs)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> bool:
        """Start a worker and reset it from a snapshot; False (logged) when it failed or the service stops."""
        if self._started_once:
            self.restarts += 1
        self._started_once = True
        try:
            self._spawn()
        except OSError as err:  # no process could be made (out of processes or descriptors): retried later
            answer: tuple[Any, ...] | str = f"it could not be spawned ({err})"
        else:
            answer = self._ask(("reset", self.config, self.snapshot()), self.start_timeout)
        if isinstance(answer, str):
            self._kill()
            self._failures += 1
            self._retry_at = time.monotonic() + min(30.0, 2.0**self._failures)
            if not self.stopping.is_set():
                log.error("the loop's worker process did not start: %s", answer)
            return False
        log.info("the loop runs in worker process %d (plan version %s)", self.pid, answer[1])
        return True

    def step(self, now: float, observation: Observation | None, events: list[Event]) -> StepOutcome:
        """One step in the worker; ``lost`` says why there is no answer (the worker is then replaced)."""
        if self._conn is None:
            if time.monotonic() < self._retry_at:
                return StepOutcome(lost="the loop's worker process is not running; it is restarted shortly")
            if not self.start():
                return StepOutcome(lost="the loop's worker process could not be started (see the log)")
        answer = self._ask(("step", now, observation, events), self.step_timeout)
        if isinstance(answer, str):
            if self.stopping.is_set():
                return StepOutcome(lost="the service is stopping")
            ended = self._kill()
            reason = f"{answer}; {ended}" if ended else answer
            self._restarting(reason)
            self._failures += 1
            if self._failures == 1:
                self.start()  # at once; a worker lost again before a step succeeds is restarted after a pause
            else:
                self._retry_at = time.monotonic() + min(30.0, 2.0 ** (self._failures - 1))
            return StepOutcome(lost=f"the loop's worker process was lost ({reason}); a new one takes over")
        self._failures = 0
        outcome: StepOutcome = answer[1]
        return outcome

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: ask it, then SIGTERM, then SIGKILL; always reaped (no process is left behind)."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        if conn is not None and proc.poll() is None:
            with contextlib.suppress(OSError):  # it is gone already: reaped below
                conn.send_bytes(wire.dumps(("stop",)))
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the loop's worker process %d did not stop within %.0fs; terminating it", proc.pid, timeout)
            self._kill()
        self._close_conn()
        self._proc = None

    # Internals -----------------------------------------------------------------------------------
    def _restarting(self, reason: str) -> None:
        log.error("the loop's worker process was lost (%s); starting a new one from the service's state", reason)
        if self.on_restart is not None:
            self.on_restart(reason)

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the worker runs this very copy of optalloc
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        cmd = [sys.executable, "-m", "optalloc.service.worker", str(theirs.fileno()), str(level)]
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        if self.nice:
            try:
                own = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, min(19, own + self.nice))
            except OSError as err:  # the loop still works, at the requests' priority
                log.warning("could not lower the priority of the loop's worker process: %s", err)

    def _ask(self, message: tuple[Any, ...], timeout: float) -> tuple[Any, ...] | str:
        """The worker's answer to ``message``, or why there is none (a string)."""
        conn = self._conn
        if conn is None:
            return "no worker process runs"
        try:
            conn.send_bytes(wire.dumps(message))
            deadline = time.monotonic() + timeout
            while not conn.poll(0.1):
                if self.stopping.is_set():
                    return "the service is stopping"
                if time.monotonic() > deadline:
                    return f"no answer within {timeout:.0f}s"
            answer: tuple[Any, ...] = wire.loads(conn.recv_bytes())
            return answer
        except (EOFError, OSError) as err:
            return f"its socket closed ({type(err).__name__})"

    def _kill(self) -> str:
        """Kill and reap the worker; how it ended ("" when there was none)."""
        proc = self._proc
        self._close_conn()
        self._proc = None
        if proc is None:
            return ""
        ended = proc.poll()
        if ended is None:
            proc.kill()
            proc.wait()
            return f"pid {proc.pid} killed"
        return f"pid {proc.pid} exited with {ended}"

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def main(argv: list[str] | None = None) -> int:
    """The worker: answer the service's requests until it says stop or its socket closes."""
    args = sys.argv[1:] if argv is None else argv
    fd, level = int(args[0]), args[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the service's to handle: it stops us
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s optalloc-loop[%(process)d] %(name)s: %(message)s"
    )
    from optalloc.service.engine import Engine
    from optalloc.solve import preload

    conn = Connection(fd)
    engine: Engine | None = None
    while True:
        try:
            message = wire.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return 0  # the service is gone
        kind = message[0]
        if kind == "stop":
            return 0
        if kind == "reset":
            config, snapshot = message[1], message[2]
            if engine is None:
                # The engines' imports (seconds on a busy machine) would count against the first re-solve.
                preload(config.method)
                preload(config.fallback)
            engine = Engine(config)
            answer: tuple[Any, ...] = ("reset", engine.reset(snapshot).version)
        elif kind == "step" and engine is not None:
            answer = ("step", engine.step(*message[1:]))
        else:
            raise RuntimeError(f"the loop's worker got {kind!r} out of turn")
        try:
            conn.send_bytes(wire.dumps(answer))
        except OSError:
            return 0  # the service is gone


if __name__ == "__main__":
    sys.exit(main())
