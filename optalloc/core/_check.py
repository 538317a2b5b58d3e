"""Validation helpers shared by the core dataclasses (field-level, raise ProblemError)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from optalloc.core.errors import ProblemError


def integer(field: str, value: Any, *, minimum: int | None = 0) -> int:
    """``value`` as a Python int (numpy ints and integral floats accepted), >= ``minimum``."""
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
    return out


def real(field: str, value: Any, *, minimum: float | None = None, optional: bool = False) -> float | None:
    """``value`` as a finite float, or None when ``optional`` and None."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ProblemError(field, value, "is not a finite number")
    out = float(value)
    if minimum is not None and out < minimum:
        raise ProblemError(field, value, "is negative" if minimum == 0 else f"is below {minimum}")
    return out


def name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProblemError(field, value, "is not a non-empty name")
    return value


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
        if not isinstance(val, str):
            raise ProblemError(f"{field}.{key}", val, "is not a string")
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
