"""Kubernetes-style resource quantities -> optalloc's canonical integer units.

Canonical units: CPU in milli-cores, memory and GPU memory in MiB. A plain integer is already in
canonical units (``cpu: 4000`` is 4 cores). A string carries a unit, the way Kubernetes writes it:

- CPU: ``"500m"`` (milli-cores), ``"2"`` or ``"2.5"`` (cores).
- Memory: ``"512Mi"``, ``"16Gi"``, ``"1.5Ti"`` (binary: Ki Mi Gi Ti Pi Ei), ``"1G"``, ``"500M"``
  (decimal: k/K M G T P E). A memory string without a unit is refused (Kubernetes would read bytes,
  which is never what a MiB-minded file means); write a plain number for MiB.

Amounts that are not whole canonical units are rounded in the safe direction: a demand (a job's
request) rounds up, a capacity (a node's) rounds down. ``1G`` is 953.67 MiB: 954 as a request, 953
as a capacity.
"""

from __future__ import annotations

import math
import numbers
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from optalloc.core import LIMITS, ProblemError

__all__ = ["cpu_milli", "is_quantity", "memory_mib", "parse_quantity"]

_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")

_MIB = Decimal(1024 * 1024)
# bytes per unit
_MEMORY_UNITS: dict[str, Decimal] = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "k": Decimal(10**3),
    "K": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
# milli-cores per unit
_CPU_UNITS: dict[str, Decimal] = {"": Decimal(1000), "m": Decimal(1)}

_CPU_HELP = "is not a CPU quantity (e.g. 500m, 2, or an integer of milli-cores)"
_MEMORY_HELP = "is not a memory quantity (e.g. 512Mi, 16Gi)"


def parse_quantity(text: str) -> tuple[Decimal, str] | None:
    """``"1.5Gi"`` -> ``(Decimal("1.5"), "Gi")``; None when the text is not a number with a unit."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    try:
        return Decimal(match.group(1)), match.group(2)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None


def is_quantity(value: Any) -> bool:
    """Whether ``value`` is a string that reads as a number with an optional unit."""
    return isinstance(value, str) and parse_quantity(value) is not None


def cpu_milli(value: Any, field: str = "cpu", *, capacity: bool = False) -> int:
    """CPU in milli-cores from an integer (canonical) or a quantity string (``"500m"``, ``"2"``)."""
    if not isinstance(value, str):
        return _canonical(value, field, _CPU_HELP, 'milli-cores; write cores as a string, e.g. "2.5"')
    parsed = parse_quantity(value)
    if parsed is None or parsed[1] not in _CPU_UNITS:
        raise ProblemError(field, value, _CPU_HELP)
    _magnitude(parsed[0], value, field)
    return _rounded(parsed[0] * _CPU_UNITS[parsed[1]], value, field, capacity)


def memory_mib(value: Any, field: str = "memory", *, capacity: bool = False) -> int:
    """Memory in MiB from an integer (canonical MiB) or a quantity string (``"16Gi"``, ``"1G"``)."""
    if not isinstance(value, str):
        return _canonical(value, field, _MEMORY_HELP, 'MiB; or a string with a unit, e.g. "1.5Gi"')
    parsed = parse_quantity(value)
    if parsed is None or parsed[1] not in _MEMORY_UNITS:
        if parsed is not None and not parsed[1]:
            raise ProblemError(field, value, "has no unit: write MiB as a plain number, or add a unit (512Mi, 16Gi)")
        raise ProblemError(field, value, _MEMORY_HELP)
    _magnitude(parsed[0], value, field)
    return _rounded(parsed[0] * _MEMORY_UNITS[parsed[1]] / _MIB, value, field, capacity)


def _canonical(value: Any, field: str, help_text: str, unit_hint: str) -> int:
    """A plain number in canonical units: an integer (or an integral float), not negative."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ProblemError(field, value, help_text)
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        out = int(float(value))
    else:
        raise ProblemError(field, value, f"is not an integer ({unit_hint})")
    if out < 0:
        raise ProblemError(field, value, "is negative")
    return _bounded(out, value, field)


def _magnitude(number: Decimal, value: str, field: str) -> None:
    """Refuse a number far beyond any limit before the arithmetic on it (``1e999999Ei`` would overflow)."""
    if number.is_finite() and number and number.adjusted() > 30:
        raise ProblemError(field, value, _BEYOND)


_BEYOND = f"is beyond the limit of 2**{LIMITS.quantity.bit_length() - 1} (docs/limits.md)"


def _rounded(amount: Decimal, value: str, field: str, capacity: bool) -> int:
    if amount < 0:
        raise ProblemError(field, value, "is negative")
    if amount > LIMITS.quantity:
        raise ProblemError(field, value, _BEYOND)
    return _bounded(int(amount.to_integral_value(rounding=ROUND_FLOOR if capacity else ROUND_CEILING)), value, field)


def _bounded(out: int, value: Any, field: str) -> int:
    if out > LIMITS.quantity:
        raise ProblemError(field, value, _BEYOND)
    return out
