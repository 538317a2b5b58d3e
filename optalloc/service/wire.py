"""What travels between the service and its loop's worker process: pickles that also carry the
read-only mappings (``MappingProxyType``) the core's frozen types hold, which plain pickle refuses.

A mapping travels as a dict and is wrapped again on arrival. Only the two ends of the service's own
socket use this: nothing here is registered globally.
"""

from __future__ import annotations

import copyreg
import gc
import io
import pickle
from types import MappingProxyType
from typing import Any, ClassVar


def _mapping(value: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (_read_only, (dict(value),))


def _read_only(value: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(value)


class _Pickler(pickle.Pickler):
    dispatch_table: ClassVar[dict[Any, Any]] = {**copyreg.dispatch_table, MappingProxyType: _mapping}


def dumps(value: Any) -> bytes:
    """``value`` as bytes (pickle's highest protocol, read-only mappings included)."""
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


def loads(data: bytes) -> Any:
    """The value :func:`dumps` made (only ever from the service's own worker).

    The collector is held off while it reads: a plan's view is tens of thousands of new objects, all
    alive, and collections in the middle of reading them (a full one among them, now and then) would
    only lengthen the time the reading holds the interpreter."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        if enabled:
            gc.enable()
