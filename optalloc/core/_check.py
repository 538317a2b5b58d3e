"""Validation helpers shared by the core dataclasses (field-level, raise ProblemError)."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from optalloc.core.errors import ProblemError
from optalloc.core.limits import LIMITS

# Control characters (C0, DEL, C1), lone surrogates (not encodable) and bidirectional overrides: in a
# name they would rewrite the terminal, break the files written, or make two names look alike.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def integer(field: str, value: Any, *, minimum: int | None = 0, maximum: int | None = LIMITS.quantity) -> int:
    """``value`` as a Python int (numpy ints and integral floats accepted), in ``minimum..maximum``."""
    if isinstance(value, bool) or value is None:
        raise ProblemError(field, value, "is not an integer")
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        out = int(float(value))
    else:
        raise ProblemError(field, value, "is not an integer")
    if minimum is not None and out < minimum:
        raise ProblemError(field, value, "is negative" if minimum == 0 else f"is below {minimum}")
    if maximum is not None and abs(out) > maximum:
        raise ProblemError(field, value, f"is beyond the limit of {_limit(maximum)}{_HINT}")
    return out


def real(
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    optional: bool = False,
    maximum: float | None = None,
) -> float | None:
    """``value`` as a finite float (magnitude at most ``maximum``), or None when ``optional`` and None."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ProblemError(field, value, "is not a finite number")
    try:
        out = float(value)
    except OverflowError:  # an integer beyond the floats
        raise ProblemError(field, value, "is not a finite number") from None
    if not math.isfinite(out):
        raise ProblemError(field, value, "is not a finite number")
    if minimum is not None and out < minimum:
        raise ProblemError(field, value, "is negative" if minimum == 0 else f"is below {minimum}")
    if maximum is not None and abs(out) > maximum:
        raise ProblemError(field, value, f"is beyond the limit of {maximum:g}{_HINT}")
    return out


def name(field: str, value: Any) -> str:
    """A non-empty name of at most ``LIMITS.name_length`` characters, without control characters."""
    if not isinstance(value, str) or not value.strip():
        raise ProblemError(field, value, "is not a non-empty name")
    return text(field, value)


def text(field: str, value: str, *, max_length: int | None = LIMITS.name_length) -> str:
    """A string of at most ``max_length`` characters, without control characters."""
    if max_length is not None and len(value) > max_length:
        raise ProblemError(field, value, f"is longer than {LIMITS.name_length} characters{_HINT}")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ProblemError(field, value, f"contains the control character {bad.group()!a}")
    return value


_HINT = " (docs/limits.md)"


def _limit(value: int) -> str:
    return f"2**{value.bit_length() - 1}" if value > 10**6 and value & (value - 1) == 0 else f"{value:,}"


def labels(field: str, value: Any) -> Mapping[str, str]:
    """A read-only str -> str mapping."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ProblemError(field, value, "is not a mapping of label names to values")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key:
            raise ProblemError(field, key, "is not a label name")
        text(field, key)
        if not isinstance(val, str):
            raise ProblemError(f"{field}.{key}", val, "is not a string")
        text(f"{field}.{key}", val)
        out[key] = val
    return MappingProxyType(out)


def names(field: str, value: Any) -> frozenset[str]:
    """A set of names (a string counts as one name, ``a|b`` as two)."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [v for v in value.split("|") if v]
    if not isinstance(value, Iterable):
        raise ProblemError(field, value, "is not a list of names")
    out = []
    for i, item in enumerate(value):
        out.append(name(f"{field}[{i}]", item))
    return frozenset(out)
