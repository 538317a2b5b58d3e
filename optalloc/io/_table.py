"""Reading CSV tables with errors that point at the file, the line and the column.

Every reader of a CSV file (the openb traces, the PAI machine list, the generic node and job import)
goes through :func:`read_table`, so a bad cell always reads
``pods.csv line 17, gpu_milli: 'abc' is not an integer``. Line numbers are the ones an editor shows
(the header is line 1).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optalloc.core import LIMITS, ProblemError
from optalloc.io._text import StrPath, lines, read_text

__all__ = ["StrPath", "Table", "read_table"]


@dataclass(frozen=True)
class Table:
    """The rows of one CSV file: ``rows`` are ``(line, fields)`` pairs, ``index`` maps column -> position."""

    label: str
    header: tuple[str, ...]
    index: dict[str, int]
    rows: list[tuple[int, list[str]]]

    def where(self, line: int, column: str | None = None) -> str:
        """The field path of a cell: ``pods.csv line 17, gpu_milli``."""
        return f"{self.label} line {line}" + (f", {column}" if column else "")

    def error(self, line: int, column: str | None, value: Any, reason: str) -> ProblemError:
        return ProblemError(self.where(line, column), value, reason)

    def wrap(self, line: int, err: ProblemError) -> ProblemError:
        """A ProblemError raised while building the object of ``line``, placed in the file."""
        out = ProblemError(f"{self.where(line)}, {err.field}" if err.field else self.where(line), err.value, err.reason)
        out.__cause__ = err
        return out

    def has(self, column: str) -> bool:
        return column in self.index

    # Cell parsers ---------------------------------------------------------------------------
    def integer(self, line: int, column: str, text: str, *, minimum: int | None = 0) -> int:
        """An integer cell (``12``; ``12.0`` too), at least ``minimum``."""
        try:
            value = int(text)
        except ValueError:
            found = _integral_float(text)
            if found is None:
                raise self.error(line, column, text, "is not an integer") from None
            value = found
        if minimum is not None and value < minimum:
            raise self.error(line, column, value, "is negative" if minimum == 0 else f"is below {minimum}")
        if abs(value) > LIMITS.quantity:
            raise self.error(line, column, text.strip(), "is beyond the limit of 2**40 (docs/limits.md)")
        return value

    def number(self, line: int, column: str, text: str, *, minimum: float | None = None) -> float:
        """A finite real cell."""
        try:
            value = float(text)
        except ValueError:
            raise self.error(line, column, text, "is not a number") from None
        if not math.isfinite(value):
            raise self.error(line, column, text, "is not a finite number")
        if minimum is not None and value < minimum:
            raise self.error(line, column, value, "is negative" if minimum == 0 else f"is below {minimum}")
        return value

    def optional_number(self, line: int, column: str, text: str, *, minimum: float | None = None) -> float | None:
        """A number, or None for an empty cell."""
        text = text.strip()
        return None if not text else self.number(line, column, text, minimum=minimum)


def _integral_float(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def read_table(
    path: StrPath,
    *,
    required: Sequence[str],
    optional: Iterable[str] = (),
    fieldnames: Sequence[str] | None = None,
    delimiter: str = ",",
    max_rows: int = LIMITS.jobs,
) -> Table:
    """Read a CSV file whose first line is the header (or, with ``fieldnames``, a file without one).

    Checks that every ``required`` column is present and that every row has as many fields as the
    header; blank lines are skipped. Columns outside ``required`` and ``optional`` are kept (and
    ignored by the callers), since exports often carry extra columns. The file must be UTF-8 (see
    :func:`optalloc.io._text.read_text`) and hold at most ``max_rows`` rows.
    """
    path = Path(path)
    label = path.name
    with lines(read_text(path)) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        if fieldnames is None:
            try:
                header = tuple(h.strip() for h in next(reader))
            except StopIteration:
                raise ProblemError(label, "", "is empty (a CSV header line is required)") from None
            except csv.Error as err:
                raise ProblemError(f"{label} line {reader.line_num}", "", f"is not valid CSV ({err})") from None
        else:
            header = tuple(fieldnames)
        index: dict[str, int] = {}
        for pos, name in enumerate(header):
            if name in index:
                raise ProblemError(f"{label} line 1", name, "is a repeated column name")
            index[name] = pos
        missing = [c for c in required if c not in index]
        if missing:
            raise ProblemError(
                f"{label} line 1" if fieldnames is None else label,
                missing[0],
                f"column is missing (the header has: {', '.join(header) or 'nothing'})",
            )
        width = len(header)
        rows: list[tuple[int, list[str]]] = []
        try:
            for fields in reader:
                line = reader.line_num
                if len(fields) != width:
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    raise ProblemError(
                        f"{label} line {line}",
                        len(fields),
                        f"fields in this row, but the header has {width} ({', '.join(header)})",
                    )
                rows.append((line, fields))
                if len(rows) > max_rows:
                    raise ProblemError(
                        label, len(rows), f"rows are more than the limit of {max_rows:,} (docs/limits.md)"
                    )
        except csv.Error as err:
            raise ProblemError(f"{label} line {reader.line_num}", "", f"is not valid CSV ({err})") from None
    return Table(label, header, index, rows)
