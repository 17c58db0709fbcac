"""A position's history: the movements applied to it, newest first, each with its signed effect on every
quantity and what it left. Support answers "why does the site say 0?" with it.

An entry is recorded (:func:`record`) by the partition state for every change it applies to a position
(a line of an event, a hold taken, released, consumed or expired), in the compact list form the cache
keeps by the cache per position (newest first, at most ``limit``, for a horizon),
and are shown by :func:`present`, which also drops a second copy of an entry (an event applied again after
a crash, before its first application was stored, records the same ``entry_id`` twice) and lists, for a
count, the late movements it absorbed (movements that arrived after the count but occurred at or before
its time: on_hand already counted them, so they changed nothing).

Replaying the effects of the entries after a count, in order, from what the count left reproduces the
position (a property test holds this).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from .model import Position
from .wire import rfc3339

#: the quantities an entry's effect and result name, in wire order
QUANTITIES = ("on_hand", "reserved", "in_transit", "damaged", "safety_stock")
#: history kept per position at most (the contract's ceiling for ``ATS_HISTORY_LIMIT``)
MAX_LIMIT = 200
#: entries a page may ask for at most, and by default
MAX_PAGE = 500
DEFAULT_PAGE = 50


class Cause(NamedTuple):
    """What made a change: the event (or, for an expiry, the hold) and where it came from."""

    event_id: str | None
    type: str  # the event's type: sale, return, transfer, receipt, reservation, adjustment, policy
    occurred_ms: int
    source: str | None  # the event's ``source`` (the system that sent it)
    reservation_id: str | None = None


def quantities(position: Position) -> tuple[int, int, int, int, int]:
    return (position.on_hand, position.reserved, position.in_transit, position.damaged, position.safety_stock)


def record(entry_id: str, cause: Cause, movement: str, applied_ms: int, before: Position,
           after: Position) -> bytes:
    """One change of one position as the cache keeps it, JSON: ``[entry_id, event_id, type, movement,
    occurred_ms, applied_ms, source, effect, after, extra]``, ``extra`` holding what only some entries
    have. ``entry_id`` is the same whenever the same event is applied again. ``movement`` is one of
    sale, return, return_damaged, receipt, transfer_out, transfer_ship_in, transfer_in, adjustment,
    count, policy, hold, release, hold_consumed, hold_expired.

    Runs for every line the worker applies, so it is encoded at once and spelt out: entries kept as
    objects until the cache write (lists, or the positions they compare) made the garbage collector
    run four times as often over the whole state, and cost more than building them (domain benchmark:
    history took a third of the throughput that way)."""
    on_hand, reserved, in_transit, damaged, safety_stock = after[:5]
    extra = _NOTHING_ELSE
    if cause.reservation_id is not None:
        extra = {"r": cause.reservation_id}
    if on_hand == before.on_hand and movement != "count" and before.count_ms is not None \
            and cause.occurred_ms <= before.count_ms:
        extra = {**extra, "c": before.count_id}  # a late movement the latest count already included
    # copied: the ``bytes`` orjson returns keeps a 4,097-byte allocation behind it, and a flush holds one entry
    # per line applied since the last (memray, 150k positions loaded: 88k entries, 360 MB at the peak)
    return bytes(memoryview(orjson.dumps(
        (entry_id, cause.event_id, cause.type, movement, cause.occurred_ms, applied_ms, cause.source,
         (on_hand - before.on_hand, reserved - before.reserved, in_transit - before.in_transit,
          damaged - before.damaged, safety_stock - before.safety_stock),
         after[:5], extra))))


_NOTHING_ELSE: dict[str, Any] = {}  # an entry's ``extra`` when it has none (encoded, never changed)


def present(wire_entries: Iterable[Sequence[Any]], *, since_ms: int) -> list[tuple[int, dict[str, Any]]]:
    """``(applied_ms, item)``: the API's form of a position's kept entries (newest first, as kept), a
    second copy of an entry dropped, entries applied before ``since_ms`` (the horizon) dropped, counts
    given the late movements they absorbed."""
    seen: set[str] = set()
    kept: list[Sequence[Any]] = []
    for wire in wire_entries:
        if wire[0] in seen or wire[5] < since_ms:
            continue
        seen.add(wire[0])
        kept.append(wire)
    absorbed: dict[str, list[str]] = {}
    for wire in kept:
        if (count_id := wire[9].get("c")) is not None:
            absorbed.setdefault(count_id, []).append(wire[1])
    return [(wire[5], _item(wire, absorbed)) for wire in kept]


def _item(wire: Sequence[Any], absorbed: dict[str, list[str]]) -> dict[str, Any]:
    entry_id, event_id, kind, movement, occurred_ms, applied_ms, source, effect, after, extra = wire
    on_hand, reserved, _, _, safety_stock = after
    item: dict[str, Any] = {
        "entry_id": entry_id, "event_id": event_id, "type": kind, "movement": movement,
        "occurred_at": rfc3339(occurred_ms), "applied_at": rfc3339(applied_ms), "source": source,
        "effect": dict(zip(QUANTITIES, effect, strict=True)),
        "result": dict(zip(QUANTITIES, after, strict=True)),
        "ats": max(0, on_hand - reserved - safety_stock),
    }
    if "r" in extra:
        item["reservation_id"] = extra["r"]
    if "c" in extra:
        item["covered_by_count"] = extra["c"]
    if movement == "count":
        item["count"] = {"implied_delta": effect[0], "absorbed": absorbed.get(event_id, [])[::-1]}
    return item


def replay(items: Sequence[dict[str, Any]]) -> dict[str, int] | None:
    """What the entries after the latest count make of what it left (``items`` newest first, as
    :func:`present` gives them): the position now, by the history alone; None without a count."""
    latest = next((i for i, item in enumerate(items) if item["movement"] == "count"), None)
    if latest is None:
        return None
    position = dict(items[latest]["result"])
    for item in reversed(items[:latest]):
        for quantity, delta in item["effect"].items():
            position[quantity] += delta
    return position


class Page(NamedTuple):
    items: list[dict[str, Any]]
    cursor: str | None  # continues with older entries; None: none left


class BadCursor(ValueError):
    """Not a cursor this API gave."""


def page(entries: list[tuple[int, dict[str, Any]]], *, limit: int, cursor: str | None) -> Page:
    """``limit`` items (newest first) after the one ``cursor`` names. A cursor names an entry and when it
    was applied: if that entry has been trimmed away since, the page goes on with entries applied before
    it (the history moves on while a client pages through it)."""
    start = 0
    if cursor is not None:
        entry_id, applied_ms = decode_cursor(cursor)
        ids = [item["entry_id"] for _, item in entries]
        if entry_id in ids:
            start = ids.index(entry_id) + 1
        else:
            start = next((i for i, (applied, _) in enumerate(entries) if applied < applied_ms), len(entries))
    chunk = entries[start:start + limit]
    more = start + limit < len(entries)
    cursor = encode_cursor(chunk[-1][1]["entry_id"], chunk[-1][0]) if more and chunk else None
    return Page([item for _, item in chunk], cursor)


def encode_cursor(entry_id: str, applied_ms: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([entry_id, applied_ms])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        entry_id, applied_ms = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise BadCursor("not a cursor of this history (pass next_cursor as it was given)") from None
    if not isinstance(entry_id, str) or not isinstance(applied_ms, int):
        raise BadCursor("not a cursor of this history (pass next_cursor as it was given)")
    return entry_id, applied_ms
