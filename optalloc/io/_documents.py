"""JSON and YAML documents: load and dump by file suffix, syntax errors as ProblemError with file and line.

Also the small checks every document reader shares (a mapping, a list, known keys, required keys),
each raising :class:`ProblemError` with the path inside the document (``jobs[3].gpus``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from optalloc.core import ProblemError
from optalloc.io._table import StrPath
from optalloc.io._text import parse_json, parse_yaml, read_text
from optalloc.io._write import write_atomic

SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def file_format(path: StrPath) -> str:
    """``"json"`` or ``"yaml"`` from the file suffix; anything else is a ProblemError."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ProblemError(Path(path).name, suffix, f"is not a known file suffix ({', '.join(SUFFIXES)})")
    return SUFFIXES[suffix]


def load(path: StrPath) -> Any:
    """The parsed document; a file that is not UTF-8, too large, too deeply nested, with duplicate keys
    or with JSON or YAML syntax errors is a ProblemError naming the file (and the line and column)."""
    path = Path(path)
    kind = file_format(path)
    text = read_text(path)
    return parse_json(text, path.name) if kind == "json" else parse_yaml(text, path.name)


def dump(data: Any, path: StrPath) -> None:
    """Write ``data`` as JSON (one list item per line, diff-friendly) or YAML, by suffix, atomically."""
    path = Path(path)
    kind = file_format(path)
    if kind == "json":
        text = to_json(data)
    else:
        text = yaml.dump(
            plain(data), Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120
        )
    write_atomic(path, text)


def to_json(data: Any) -> str:
    """JSON text with the top-level keys on their own lines and each list item on one line."""
    data = plain(data)
    if not isinstance(data, dict):
        return json.dumps(data, indent=2) + "\n"
    parts = []
    for key, value in data.items():
        head = f"  {json.dumps(key)}: "
        if isinstance(value, list) and value:
            items = ",\n".join("    " + json.dumps(item, separators=(", ", ": ")) for item in value)
            parts.append(f"{head}[\n{items}\n  ]")
        else:
            parts.append(head + json.dumps(value, separators=(", ", ": ")))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, tuples, sets, enums and read-only mappings made JSON-ready."""
    if value is None or type(value) in (str, bool, int):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, (str, bool, int)):
        return (str if isinstance(value, str) else bool if isinstance(value, bool) else int)(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    return str(value)


def in_file(label: str, err: ProblemError) -> ProblemError:
    """``err`` with the file name in front of its path: ``problem.json: jobs[3].gpus``."""
    out = ProblemError(f"{label}: {err.field}" if err.field else label, err.value, err.reason)
    out.__cause__ = err.__cause__
    return out


# Shared structural checks ---------------------------------------------------------------------
def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def mapping(path: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProblemError(path, value, f"is not a mapping ({what})")
    return value


def listing(path: str, value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProblemError(path, value, f"is not a list ({what})")
    return value


def known_keys(path: str, value: Mapping[str, Any], known: Iterable[str], what: str) -> None:
    known = tuple(known)
    for key in value:
        if key not in known:
            raise ProblemError(
                join(path, str(key)), value[key], f"is not {_article(what)} {what} field (known: {', '.join(known)})"
            )


def required(path: str, value: Mapping[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        if key not in value:
            raise ProblemError(path, dict(value), f"has no '{key}' field")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
