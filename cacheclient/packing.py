"""Commands packed by hiredis in one call, not argument by argument in Python.

redis-py (8.x) packs each command through ``HiredisRespSerializer.pack``, which passes every argument
through two generator expressions and ``Encoder.encode`` before handing the tuple to
``hiredis.pack_command``: ~21 µs for one position hash of 20 locations (an ``HSET`` of 42 arguments)
against ~3.4 µs for ``hiredis.pack_command`` alone. The worker writes one such hash per SKU changed in
a batch, so that was ~12% of an ingesting worker's samples (py-spy, ``benchmarks.ingest``).

:class:`WholeCommandPacker` hands the tuple to hiredis as it is: hiredis encodes ``str`` as UTF-8 and
``int``, ``float``, ``bytes`` and ``memoryview`` as redis-py does (a unit test compares the bytes), and
raises ``TypeError`` on anything else (a ``bool`` above all, which redis-py refuses), which goes to
redis-py's own packer and its ``DataError``. A command name with a space in it (``CLIENT SETINFO``), or
one given as bytes, goes there too, to be split. Installed only where the connection encodes as hiredis
does (UTF-8, strict), and only on a redis-py whose connections keep a ``_command_packer`` (otherwise they
stay as they are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hiredis


class WholeCommandPacker:
    """A connection's ``_command_packer``: the whole command to hiredis, anything else to ``fallback``."""

    __slots__ = ("_fallback",)

    def __init__(self, fallback: Callable[..., list[bytes]]) -> None:
        self._fallback = fallback

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        if not isinstance(name, str) or " " in name:  # "CLIENT SETINFO": split by redis-py (as bytes too)
            return self._fallback(*args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a bool, None, anything redis-py encodes otherwise or refuses: its way
            return self._fallback(*args)


def install(connection: Any) -> None:
    """Pack ``connection``'s commands with :class:`WholeCommandPacker` when that packs the same bytes."""
    packer, encoder = getattr(connection, "_command_packer", None), getattr(connection, "encoder", None)
    if packer is None or encoder is None or isinstance(packer, WholeCommandPacker):
        return
    if encoder.encoding.replace("-", "").lower() != "utf8" or encoder.encoding_errors != "strict":
        return
    connection._command_packer = WholeCommandPacker(packer.pack)


_classes: dict[type, type] = {}


def packing_class(connection_class: type) -> type:
    """``connection_class`` whose instances pack with :class:`WholeCommandPacker` (one subclass per class)."""
    if connection_class in _classes.values():
        return connection_class
    if connection_class not in _classes:
        base: Any = connection_class

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            base.__init__(self, *args, **kwargs)
            install(self)

        _classes[connection_class] = type(f"Packing{connection_class.__name__}", (connection_class,),
                                          {"__init__": __init__, "__module__": __name__})
    return _classes[connection_class]
