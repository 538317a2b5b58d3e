"""Work in a forked child process that streams its results to the parent as it goes.

A plain ``os.fork`` with a pipe rather than ``multiprocessing`` (a caller may itself be a daemonic worker
of a ``multiprocessing.Pool``, which may not have children): the child inherits the problem and the
search state without pickling them, sends each result as a length-prefixed pickle the moment it has it,
and is ended by the parent, which keeps every complete message and drops a message cut off by the end.
Nothing of the child outlives :meth:`Stream.close`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import select
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds a child process gets to exit after it is told to, before it is killed.
CHILD_GRACE = 0.05

_HEADER = struct.Struct(">I")
_ERROR = "__optalloc_child_error__"


def child_setup() -> None:
    """What a forked child of a solve does first: the parent decides when it ends (a terminal's Ctrl-C
    reaches it, and the host's own SIGTERM handler, a service's shutdown say, is not the child's to run),
    and the parent's HiGHS worker threads did not survive the fork, so HiGHS starts its pool afresh."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(ImportError):
        import highspy._core as hc

        hc._Highs.resetGlobalScheduler(True)


def reap(pid: int, *, wait: bool) -> bool:
    """End the child ``pid`` (wait for it when it is done, else terminate it, then kill it after
    :data:`CHILD_GRACE`); whether it exited on its own with status 0."""
    if not wait:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.perf_counter() + CHILD_GRACE
        while time.perf_counter() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return False
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


class Stream:
    """``work(send)`` running in a forked child; each ``send(message)`` reaches the parent's
    :meth:`receive` (any picklable message). An exception in the child ends it and is logged by the
    parent (the messages sent before it are kept)."""

    def __init__(self, work: Callable[[Callable[[object], None]], None]) -> None:
        self._buffer = bytearray()  # what arrived and was not parsed yet (appended to, parsed from the front)
        self._open = True
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: leave without running the parent's exit hooks
            code = 1
            try:
                os.close(read_end)
                child_setup()
                # A writer thread empties the queue into the pipe, so that the work never waits for the
                # parent to read (a pipe holds 64 KiB; the parent reads between steps of its own work).
                pending: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
                writer = threading.Thread(target=_drain, args=(pending, write_end), daemon=True)
                writer.start()

                def send(message: object) -> None:
                    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)  # as it is now
                    pending.put(_HEADER.pack(len(data)) + data)

                try:
                    work(send)
                    code = 0
                except BaseException:
                    send((_ERROR, traceback.format_exc()))
                pending.put(None)
                writer.join()
            finally:
                os._exit(code)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.pid: int | None = pid
        self._read_end: int | None = read_end

    def receive(self, wait: float = 0.0) -> list[object]:
        """The complete messages that arrived (waiting up to ``wait`` seconds for the first)."""
        if self._open and self._read_end is not None and wait > 0:
            select.select([self._read_end], [], [], wait)
        self._read()
        return self._messages()

    @property
    def running(self) -> bool:
        """Whether the child may still send (its end of the pipe is open)."""
        return self._open

    def close(self) -> list[object]:
        """End the child now and return the complete messages it sent that were not received yet (once:
        closed again, it returns nothing)."""
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):  # (reaped already by a close interrupted after it)
                reap(self.pid, wait=not self._open)
            self.pid = None  # once reaped: a close interrupted before that reaps on the next one
        if self._read_end is None:
            return []
        while self._open:  # the child is gone: what it wrote is all in the pipe
            select.select([self._read_end], [], [], 0.01)
            self._read()
        read_end, self._read_end = self._read_end, None
        os.close(read_end)
        return self._messages()

    def _read(self) -> None:
        while self._open and self._read_end is not None:
            try:
                chunk = os.read(self._read_end, 1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                self._open = False
                return
            self._buffer += chunk

    def _messages(self) -> list[object]:
        # The buffer is parsed from an offset and trimmed once per call: rebuilt after every message (and
        # grown by concatenating bytes), it cost time quadratic in what the child sent — on 10,000 nodes
        # the polish's packings, tens of megabytes, held a 30 s solve for 60 s more.
        out: list[object] = []
        buffer, pos = self._buffer, 0
        while len(buffer) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, pos)
            end = pos + _HEADER.size + size
            if len(buffer) < end:
                break  # cut off: the rest is still on its way (or was, when the child was ended)
            message = pickle.loads(buffer[pos + _HEADER.size : end])
            pos = end
            if isinstance(message, tuple) and message and message[0] == _ERROR:
                log.warning("a child process of the solve failed:\n%s", message[1])
                continue
            out.append(message)
        del buffer[:pos]
        return out


def _drain(pending: queue.SimpleQueue[bytes | None], fd: int) -> None:
    """The child's writer thread: each queued message into the pipe, until the end mark (None)."""
    while (data := pending.get()) is not None:
        _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
