"""The exception tree: exceptions are for misuse; solver outcomes are status data."""

from __future__ import annotations

from typing import Any


class OptallocError(Exception):
    """Base class of every error optalloc raises on purpose."""


class ProblemError(OptallocError, ValueError):
    """Bad input: names the field path and the offending value.

    ``str(err)`` reads ``jobs[3].gpus: -1 is negative``. ``field`` holds the path
    (``jobs[3].gpus``), ``value`` the value and ``reason`` the rest of the sentence.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{self.field}: {shown} {self.reason}" if self.field else f"{shown} {self.reason}"

    def prefixed(self, prefix: str) -> ProblemError:
        """The same error with its field path below ``prefix`` (``jobs[3]`` + ``gpus``)."""
        if not self.field:
            field = prefix
        elif self.field.startswith("["):
            field = prefix + self.field
        else:
            field = f"{prefix}.{self.field}"
        err = ProblemError(field, self.value, self.reason)
        err.__cause__ = self.__cause__
        return err


class SolverError(OptallocError, RuntimeError):
    """A solver failed in a way that is not a status (crash, invalid model): a bug to report."""


class MethodUnavailable(OptallocError, LookupError):
    """An unknown method name, or a method whose optional dependency is not installed."""


class InvalidAllocation(OptallocError):
    """Raised by ``Allocation.raise_for_status`` / ``raise_if_invalid`` for callers who prefer exceptions."""
