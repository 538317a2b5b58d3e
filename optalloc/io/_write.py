"""Writing output files atomically: a temporary file in the same folder, then a rename.

A reader (or a crash, a full disk, a Ctrl-C) sees the old file or the new one, never a truncated mix.
The new file gets the mode of the file it replaces, else the usual ``0o666`` less the umask. A failure
raises :class:`~optalloc.core.errors.OutputError` naming the file and the reason, and leaves no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from optalloc.core import OutputError
from optalloc.io._table import StrPath

__all__ = ["write_atomic"]


def write_atomic(path: StrPath, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` atomically (a symbolic link keeps pointing at the new content)."""
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    temporary = target.parent / f".optalloc-{secrets.token_hex(6)}.tmp"
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = None
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if mode is not None:
                os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as err:
        failure = OutputError(f"could not write {path}: {err.strerror or err}")
        failure.errno, failure.filename = err.errno, str(path)
        raise failure from None
    return Path(path)
