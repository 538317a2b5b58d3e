"""The exception tree: exceptions are for misuse; solver outcomes are status data."""

from __future__ import annotations

import dataclasses
import reprlib
from enum import Enum
from pathlib import PurePath
from typing import Any


class _NoValue:
    """The value of an error about a whole file or field, shown as nothing (``file.json: is not UTF-8``)."""

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __reduce__(self) -> str:
        return "NO_VALUE"  # pickled by name: the one sentinel, also in another process


#: Pass as a ProblemError's ``value`` when there is no single offending value to show.
NO_VALUE: Any = _NoValue()


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

    def __reduce__(self) -> tuple[Any, tuple[str, Any, str]]:
        """Pickle by the three fields (an error raised in a worker process or a Ray task travels back)."""
        return (type(self), (self.field, self.value, self.reason))

    def _message(self) -> str:
        text = self.reason if self.value is NO_VALUE else f"{short_repr(self.value)} {self.reason}"
        return f"{self.field}: {text}" if self.field else text

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


class OutputError(OptallocError, OSError):
    """A result could not be written (a full disk, a folder without write permission...).

    Writers replace their file atomically (a temporary file, then a rename), so that the file is either
    the old one or the new one, never a truncated mix; the command line exits with status 1.
    ``str(err)`` is the message (``could not write a.json: No space left on device``); ``errno`` and
    ``filename`` are those of the failure.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "could not write"


class SolverError(OptallocError, RuntimeError):
    """A solver failed in a way that is not a status (crash, invalid model): a bug to report."""


class MethodUnavailable(OptallocError, LookupError):
    """An unknown method name, or a method whose optional dependency is not installed."""


class InvalidAllocation(OptallocError):
    """Raised by ``Allocation.raise_for_status`` / ``raise_if_invalid`` for callers who prefer exceptions."""


class _ShortRepr(reprlib.Repr):
    """A repr whose work and length are bounded whatever the value: a few items of a few levels of
    containers (a YAML alias bomb is never walked), no conversion of a huge integer to its digits, and
    no ``repr`` of an unknown object (a dataclass holding a million jobs) beyond its type and name."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = 4
        self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 4
        self.maxstring = 160
        self.maxlong = 40
        self.maxother = 80

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # beyond 38 digits: the digits themselves would be the cost
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)

    def repr_bool(self, x: bool, level: int) -> str:
        return repr(x)

    def repr_mappingproxy(self, x: Any, level: int) -> str:
        return self.repr_dict(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        if x is None or isinstance(x, (float, complex, Enum, PurePath)) or type(x).__module__ in ("decimal", "numpy"):
            text = repr(x)
            return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."
        if isinstance(x, bytes | bytearray):
            return repr(bytes(x[: self.maxstring])) + ("..." if len(x) > self.maxstring else "")
        name = getattr(x, "name", None) if dataclasses.is_dataclass(x) else None
        if isinstance(name, str):
            return f"{type(x).__name__}({self.repr1(name, level - 1)})"
        return f"<{type(x).__name__}>"


_SHORT = _ShortRepr()


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to about 160 characters, in bounded time and memory (for error messages)."""
    shown = _SHORT.repr(value)
    return shown if len(shown) <= 160 else shown[:157] + "..."
