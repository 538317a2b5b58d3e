"""What the commands write, checked before they work: never an input, never a file they did not write.

- :func:`check_output_file` runs before any solving: the suffix is known, the folder exists and is
  writable, the name fits the file system, the file is not one of the command's inputs (never
  overwritten, even with ``--force``), and an existing file is replaced only with ``--force``.
- :func:`check_output_folder` does the same for ``simulate``'s folder: its fixed file names may replace
  the files of an earlier ``optalloc simulate`` there (recognised by its ``results.json``), anything
  else only with ``--force``; an input among them never.
- :func:`publish` moves files written in a staging folder into place, one atomic rename each.

Every refusal is a :class:`ProblemError` naming the option (the command exits with status 2 before
any work); a write that fails later is an :class:`OutputError` (status 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from optalloc.core import OutputError, ProblemError

__all__ = ["check_output_file", "check_output_folder", "publish", "staging"]


def check_output_file(path: Path, *, inputs: Iterable[Path | None], force: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot or may not be written (see the module doc)."""
    from optalloc.io._documents import file_format

    shown = str(path)
    _plain_path(path, option)
    try:
        file_format(path)
    except ProblemError as err:
        raise ProblemError(option, shown, err.reason) from None
    _writable_folder(path.parent, option, shown)
    _name_fits(path, option, shown)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise ProblemError(option, shown, "is a folder, not a file")
    clash = _input_among([path], inputs)
    if clash is not None:
        raise ProblemError(option, shown, f"is an input of this command ({clash}): write the result elsewhere")
    if not force:
        raise ProblemError(option, shown, "already exists: pass --force to replace it, or choose another name")


def check_output_folder(
    folder: Path, names: Sequence[str], *, inputs: Iterable[Path | None], force: bool, option: str = "--out"
) -> list[Path]:
    """Refuse, before any work, a results folder that cannot or may not receive ``names``.

    Returns the files of an earlier ``optalloc simulate`` in ``folder`` (they may be replaced, and are
    removed when this run does not write them again, so that no stale result stays beside new ones).
    """
    shown = str(folder)
    _plain_path(folder, option)
    if os.path.lexists(folder) and not folder.is_dir():
        raise ProblemError(option, shown, "exists and is not a folder")
    ancestor = folder
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    _writable_folder(ancestor, option, shown)
    targets = [folder / name for name in names]
    inputs = list(inputs)
    clash = _input_among(targets, inputs)
    if clash is not None:
        raise ProblemError(option, shown, f"would receive a file named like an input of this command ({clash})")
    present = [t for t in targets if os.path.lexists(t)]
    if not present:
        return []
    if _written_by_simulate(folder / "results.json") or force:
        return present
    listed = ", ".join(t.name for t in present)
    raise ProblemError(
        option,
        shown,
        f"already holds {listed}, not from an earlier optalloc simulate: pass --force to replace them, "
        "or choose another folder",
    )


@contextlib.contextmanager
def staging(folder: Path):  # type: ignore[no-untyped-def]
    """A fresh hidden folder inside ``folder`` (created with its parents) to write results into,
    removed on the way out whatever happens."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".optalloc-", dir=folder))
    except OSError as err:
        raise _output_error(folder, err) from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(files: Iterable[Path], folder: Path, *, stale: Iterable[Path] = ()) -> list[Path]:
    """Move ``files`` (in a staging folder inside ``folder``) into ``folder``, each by one atomic rename;
    then remove the ``stale`` files of an earlier run that this one did not write again."""
    out: list[Path] = []
    for source in files:
        target = folder / source.name
        try:
            os.replace(source, target)
        except OSError as err:
            raise _output_error(target, err) from None
        out.append(target)
    written = {p.name for p in out}
    for old in stale:
        if old.name not in written:
            with contextlib.suppress(OSError):
                old.unlink()
    return out


# Internals -----------------------------------------------------------------------------------
def _plain_path(path: Path, option: str) -> None:
    if "\x00" in str(path):
        raise ProblemError(option, str(path), "contains a NUL character")


def _writable_folder(folder: Path, option: str, shown: str) -> None:
    folder = folder if str(folder) else Path(".")
    if not folder.exists():
        raise ProblemError(option, shown, f"cannot be written: the folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ProblemError(option, shown, f"cannot be written: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProblemError(option, shown, f"cannot be written: no permission to write in {str(folder)!r}")


def _name_fits(path: Path, option: str, shown: str) -> None:
    try:
        longest = os.pathconf(path.parent if str(path.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(path.name)) > longest:
        raise ProblemError(
            option, shown, f"has a file name longer than {longest} bytes, which this file system refuses"
        )


def _input_among(targets: Iterable[Path], inputs: Iterable[Path | None]) -> str | None:
    """The first input that is one of ``targets`` (the same file, also through a link), else None."""
    real = {os.path.realpath(t): t for t in targets}
    for given in inputs:
        if given is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            if os.path.realpath(given) in real:
                return str(given)
            for target in real.values():
                if os.path.exists(target) and os.path.exists(given) and os.path.samefile(target, given):
                    return str(given)
    return None


def _written_by_simulate(results: Path) -> bool:
    """Whether ``results`` is the ``results.json`` of an earlier ``optalloc simulate``."""
    try:
        if results.stat().st_size > 64 * 2**20:
            return False
        data = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"command", "scenario", "config", "policies"} <= set(data)


def _output_error(path: Path, err: OSError) -> OutputError:
    failure = OutputError(f"could not write {path}: {err.strerror or err}")
    failure.errno, failure.filename = err.errno, str(path)
    return failure
