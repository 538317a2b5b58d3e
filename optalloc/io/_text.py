"""Reading input files safely: a bounded size, UTF-8 text, and documents of bounded shape.

Every reader of optalloc goes through :func:`read_text`, so that any file -- binary, Latin-1, UTF-16,
endless (``/dev/zero``), larger than :data:`~optalloc.core.limits.LIMITS` ``.file_bytes`` -- fails
with one :class:`ProblemError` naming the file (and the line of a bad byte) instead of a
``UnicodeDecodeError`` or an exhausted memory. :func:`parse_json` and :func:`parse_yaml` refuse
duplicate keys (the last one would silently win), nesting deeper than ``LIMITS.nesting`` and YAML
aliases that would add more than ``LIMITS.alias_values`` values (an alias bomb), before any reader
walks the document.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from optalloc.core import LIMITS, ProblemError
from optalloc.core.errors import NO_VALUE

StrPath = str | PathLike[str]

_BOMS = {b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16", b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32"}


def read_bytes(path: StrPath, label: str | None = None) -> bytes:
    """The bytes of ``path``, at most ``LIMITS.file_bytes`` of them (also from a pipe or a device)."""
    path = Path(path)
    label = label or path.name
    limit = LIMITS.file_bytes
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ProblemError(label, NO_VALUE, f"is larger than the limit of {limit // 2**20} MiB (docs/limits.md)")
    return data


def read_text(path: StrPath, label: str | None = None) -> str:
    """The text of ``path``, decoded as UTF-8 (a byte-order mark is skipped)."""
    label = label or Path(path).name
    return decode(read_bytes(path, label), label)


def decode(data: bytes, label: str) -> str:
    """``data`` as UTF-8 text; a file in another encoding is named with the line of its first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        hint = next((f"; it looks {name}" for bom, name in sorted(_BOMS.items()) if data.startswith(bom)), "")
        if not hint and b"\x00" in data[:1024]:
            hint = "; it looks binary"
        bad = data[err.start : err.start + 1]
        raise ProblemError(f"{label} line {line}", bad, f"is not UTF-8 text{hint} (save the file as UTF-8)") from None


def lines(text: str) -> io.StringIO:
    """``text`` as a file object for :mod:`csv` (newlines kept as written, as ``csv`` wants them)."""
    return io.StringIO(text, newline="")


def parse_json(text: str, label: str) -> Any:
    """The JSON document of ``text``; syntax, duplicate keys, nesting and huge numbers are ProblemErrors."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs(label))
    except json.JSONDecodeError as err:
        raise syntax_error(label, text, err.lineno, err.colno, f"is not valid JSON ({err.msg})") from None
    except ProblemError:
        raise
    except RecursionError:
        raise _too_deep(label) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise _parse_error(label, "JSON", err) from None
    check_shape(data, label)
    return data


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (C when available), refusing duplicate keys in a mapping."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults`: explicit keys may override merged ones
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: the constructor reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, label: str) -> Any:
    """The YAML document of ``text`` (safe loader); errors as :func:`parse_json`'s."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "syntax error"
        if mark is None:
            raise ProblemError(label, NO_VALUE, f"is not valid YAML ({problem})") from None
        raise syntax_error(label, text, mark.line + 1, mark.column + 1, f"is not valid YAML ({problem})") from None
    except yaml.YAMLError as err:
        raise _parse_error(label, "YAML", err) from None
    except RecursionError:
        raise _too_deep(label) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise _parse_error(label, "YAML", err) from None
    check_shape(data, label)
    return data


def check_shape(data: Any, label: str) -> None:
    """Refuse a document nested deeper than ``LIMITS.nesting`` or whose YAML aliases add more than
    ``LIMITS.alias_values`` values (each shared list or mapping is visited once: linear time)."""
    sizes: dict[int, int] = {}  # id of a list or mapping -> values in it, aliases expanded
    distinct = 0

    def size(value: Any, depth: int) -> int:
        nonlocal distinct
        if not isinstance(value, (list, Mapping)):
            return 1
        if depth > LIMITS.nesting:
            raise _too_deep(label)
        key = id(value)
        if key in sizes:
            return sizes[key]
        items = value.values() if isinstance(value, Mapping) else value
        total = 1 + sum(size(item, depth + 1) for item in items)
        distinct += 1 + len(value)
        sizes[key] = total
        return total

    expanded = size(data, 1)
    if expanded - distinct > LIMITS.alias_values:
        raise ProblemError(
            label,
            NO_VALUE,
            f"has YAML aliases that add {expanded - distinct:,} values to the document, more than the limit of "
            f"{LIMITS.alias_values:,} (an alias bomb?) (docs/limits.md)",
        )


def syntax_error(label: str, text: str, line: int, column: int, reason: str) -> ProblemError:
    """A parse error at ``line``, ``column``, showing that line (cut, stripped)."""
    shown = ""
    if line > 0:
        start = 0
        for _ in range(line - 1):
            start = text.find("\n", start) + 1
            if start == 0:
                break
        else:
            end = text.find("\n", start)
            shown = text[start : end if end >= 0 else len(text)][:200].strip()
    return ProblemError(f"{label} line {line}, column {column}", shown, reason)


def _unique_pairs(label: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ProblemError(label, key, "is a duplicate key in one JSON object (the last one would win)")
            out[key] = value
        return out

    return hook


def _too_deep(label: str) -> ProblemError:
    return ProblemError(
        label, NO_VALUE, f"nests lists and mappings deeper than the limit of {LIMITS.nesting} levels (docs/limits.md)"
    )


def _parse_error(label: str, kind: str, err: Exception) -> ProblemError:
    if "integer string conversion" in str(err):
        return ProblemError(label, NO_VALUE, "has an integer of more than 4300 digits (docs/limits.md)")
    return ProblemError(label, NO_VALUE, f"is not valid {kind} ({_first_line(err)})")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
