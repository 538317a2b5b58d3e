"""The empirical tables the synthetic workloads draw from, read from package data (``optalloc/io/data``).

Each file (``openb.json``, ``philly.json``) names its source trace and says how it was computed; a
table is ``{"about": ..., "columns": [...], "rows": [[...], ...]}``. They are read with
:mod:`importlib.resources`, so they are found in a source checkout, an installed wheel or a zip alike,
and they ship with the package (``[tool.setuptools.package-data]`` in pyproject.toml).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["FILES", "document", "rows"]

#: The package data files, in ``optalloc/io/data``.
FILES = ("openb.json", "philly.json")


@cache
def document(name: str) -> dict[str, Any]:
    """One data file, parsed (read once per process)."""
    if name not in FILES:
        raise KeyError(f"{name!r} is not a table file of optalloc.io (known: {', '.join(FILES)})")
    text = resources.files("optalloc.io").joinpath("data", name).read_text(encoding="utf-8")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def rows(name: str, table: str, columns: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
    """The rows of ``table`` in file ``name`` as tuples, checking that its columns are ``columns``."""
    found = document(name)[table]
    if tuple(found["columns"]) != columns:
        raise ValueError(f"{name}: table {table} has columns {found['columns']}, expected {list(columns)}")
    return tuple(tuple(row) for row in found["rows"])
