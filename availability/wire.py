"""Wire shapes shared by the worker and the API, as plain JSON-able structures.

The processes serialize most of them (orjson); this module fixes the shapes, so a field order or a key
format is defined once. State records are the exception: the domain hands them over as JSON text
(:func:`bucket_json`, :func:`record_json`), its positions encoded by orjson in one call per record
(:func:`positions_json`).
State record keys carry the owning partition, so a partition's records can be picked out of the table
after recovery:

=================================  ==========================================================
``b|{p}|{location}|{bucket}``      positions of one location whose SKU hashes to ``bucket``,
                                   with the input offsets they include (``w``) and their ERP
                                   netting (``n``: open windows, outbox, revision bookkeeping);
                                   ``v`` numbers this full record (0 when absent)
``c|{p}|{location}|{bucket}``      the changes since the full record ``v`` of the same bucket:
                                   positions and pending netting entries changed since, the
                                   input offsets now; ignored unless ``v`` matches (the full
                                   record is rewritten, and this one deleted, once the changes
                                   reach half the bucket: a flush writes what changed, not the
                                   whole bucket). Both carry the bucket's change feed outbox
                                   (``f``) whole, when it holds anything
``h|{p}|{reservation_id}``         one hold
``d|{p}|{generation}``             the event ids first applied in one flush, as 64-bit hashes
                                   (``h``: :func:`ids_record_json`)
``n|{p}|{bucket}``, ``o|...``      the network sums of the SKUs the partition owns, full and
                                   changes (:mod:`availability.networkstate`)
``m|{p}``                          the flush marker: last generation, input offsets, when this
                                   flush and the one before it were taken; written last
=================================  ==========================================================
"""

from __future__ import annotations

import base64
import functools
import json
import sys
import zlib
from array import array
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson

from .dedupe import id_hash
from .model import Position
from .netting import Posting
from .reservations import Hold, Shortfall

#: positions of a location are packed into this many bucket records. Contract: changing it
#: re-keys the stored state.
BUCKETS = 16


def bucket_of(sku: str) -> int:
    return zlib.crc32(sku.encode()) % BUCKETS


def bucket_key(partition: int, location_id: str, bucket: int) -> str:
    return f"b|{partition}|{location_id}|{bucket}"


def changes_key(partition: int, location_id: str, bucket: int, slot: int = 0) -> str:
    """The key of a bucket's record of changes in ``slot`` of its chain (:class:`availability.shard._Bucket`).
    Slot 0 keeps the key the single, cumulative record of changes had before the chain (it loads as one)."""
    return f"c|{partition}|{location_id}|{bucket}|{slot}" if slot else f"c|{partition}|{location_id}|{bucket}"


def hold_key(partition: int, reservation_id: str) -> str:
    return f"h|{partition}|{reservation_id}"


def ids_key(partition: int, generation: int) -> str:
    return f"d|{partition}|{generation}"


def marker_key(partition: int) -> str:
    return f"m|{partition}"


def partition_of_key(key: str) -> int | None:
    parts = key.split("|", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def position_to_wire(position: Position) -> list[Any]:
    return [*position[:9], [list(entry) for entry in position.log]]


def position_from_wire(data: list[Any]) -> Position:
    """A position as :func:`position_to_wire` wrote it. Built with ``tuple.__new__`` (what ``_make`` does),
    not through the named tuple's ``__new__``: a partition load builds one per position (half the cost)."""
    on_hand, reserved, in_transit, damaged, safety_stock, updated_ms, count_ms, count_id, floor_ms, log = data
    return _new(Position, (on_hand, reserved, in_transit, damaged, safety_stock, updated_ms, count_ms, count_id,
                           floor_ms, tuple([(int(t), int(d)) for t, d in log]) if log else ()))


_new = tuple.__new__


def positions_json(positions: Mapping[str, Position]) -> str:
    """``{"sku": [...], ...}``: positions as a bucket record's ``p`` object (each the JSON of
    :func:`position_to_wire`), by orjson in one call. This runs for every position a flush writes:
    0.25 µs a position, against 1.0 µs for the text of each written by hand and joined (which made it
    worth keeping each changed position's text from one flush to the next)."""
    return orjson.dumps(positions, default=tuple).decode()  # a Position (a named tuple) as its plain tuple


def bucket_json(version: int, watermarks: dict[int, int], positions: str, decisions: dict[str, Any] | None,
                netting: str | None, ids: set[str] | None = None, feed: str | None = None, slot: int = 0) -> str:
    """A bucket record (or a record of its changes) as JSON text: ``{"v": version, "s"?: slot of the
    chain of changes (0 when missing), "w": watermarks, "p": positions, "d"?: decisions, "n"?: netting,
    "i"?: event ids, "f"?: change feed outbox}``, from the JSON of ``p`` (:func:`positions_json`) and the
    netting's and outbox's own."""
    marks = ",".join([f'"{code}":{offset}' for code, offset in watermarks.items()])
    slot_field = f'"s":{slot},' if slot else ""
    text = f'{{"v":{version},{slot_field}"w":{{{marks}}},"p":{positions}'
    if decisions:
        text += ',"d":' + record_json(decisions)
    if netting is not None:
        text += ',"n":' + netting
    if ids:
        text += ',"i":[' + ",".join(map(encode_basestring_ascii, sorted(ids))) + "]"
    if feed is not None:
        text += ',"f":' + feed
    return text + "}"


def record_json(value: Any) -> str:
    """Any other state record as JSON text (holds, ids, the marker)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def ids_record_json(first_ms: int, hashes: array[int]) -> str:
    """An ids record: ``{"t": first seen, "h": the ids' hashes}``, each 8 bytes little-endian
    (:func:`availability.dedupe.id_hash`), base64: 10.7 characters per id."""
    if sys.byteorder != "little":
        hashes = array("Q", hashes)
        hashes.byteswap()
    return f'{{"t":{int(first_ms)},"h":"{base64.b64encode(hashes.tobytes()).decode()}"}}'


def ids_from_wire(value: dict[str, Any]) -> tuple[int, array[int]]:
    """``(first seen, hashes)`` of an ids record; one written before the hashes (``"ids"``: the ids
    themselves) is hashed as it loads."""
    if "h" not in value:
        return value["t"], array("Q", map(id_hash, value["ids"]))
    hashes = array("Q", base64.b64decode(value["h"], validate=True))
    if sys.byteorder != "little":
        hashes.byteswap()
    return value["t"], hashes


def hold_to_wire(hold: Hold) -> list[Any]:
    return [hold.reservation_id, hold.location_id, hold.status, [list(x) for x in hold.lines],
            [list(x) for x in hold.remaining], hold.expires_ms, hold.decided_ms,
            [list(s) for s in hold.shortfalls], hold.channel, hold.event_id, list(hold.origin)]


def hold_from_wire(data: list[Any]) -> Hold:
    rid, location, status, lines, remaining, expires_ms, decided_ms, shorts, channel, event_id, origin = data
    return Hold(rid, location, status, tuple((s, q) for s, q in lines), tuple((s, q) for s, q in remaining),
                expires_ms, decided_ms, tuple(Shortfall(*s) for s in shorts), channel, event_id,
                (int(origin[0]), int(origin[1])))


def cache_value(position: Position) -> list[int]:
    """What the API reads per (SKU, location): one field of the SKU's hash."""
    return [position.on_hand, position.reserved, position.in_transit, position.damaged,
            position.safety_stock, position.updated_ms]


def cache_field(position: Position) -> bytes:
    """:func:`cache_value` as the bytes of its hash field, the same bytes ``orjson.dumps`` gives. Not
    ``orjson.dumps`` itself: its small ``bytes`` keeps a 4,097-byte allocation behind it, and a batch or a
    partition load holds one per changed position until the pipeline is sent (100k positions: ~400 MiB)."""
    p = position
    return f"[{p.on_hand},{p.reserved},{p.in_transit},{p.damaged},{p.safety_stock},{p.updated_ms}]".encode()


def rfc3339(epoch_ms: int) -> str:
    """``2026-11-27T10:00:00.123Z``. Every answer carries a time per location: the part down to the second
    is remembered (an answer's positions were mostly updated in the same seconds), the milliseconds added."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_to_the_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=65_536)
def _to_the_second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def answer_location(location_id: str, value: Sequence[int]) -> dict[str, Any]:
    """One location of an availability answer, from its cache value."""
    on_hand, reserved, in_transit, damaged, safety_stock, updated_ms = value
    return {"location_id": location_id, "ats": max(0, on_hand - reserved - safety_stock), "on_hand": on_hand,
            "reserved": reserved, "in_transit": in_transit, "damaged": damaged, "safety_stock": safety_stock,
            "updated_at": rfc3339(updated_ms)}


#: a message on :data:`availability.topics.CHANGED_CHANNEL` that would name more SKUs than this names none
#: and says "every SKU changed" instead (a whole-partition snapshot)
CHANGED_MAX_SKUS = 1_000
CHANGED_EVERY_SKU = b"*"


def changed_message(skus: Collection[str]) -> bytes:
    """The SKUs one cache write changed, space-separated (a validated SKU has no space and no ``*``)."""
    if len(skus) > CHANGED_MAX_SKUS:
        return CHANGED_EVERY_SKU
    return " ".join(skus).encode()


def changed_skus(message: bytes) -> list[str] | None:
    """The SKUs a :func:`changed_message` names; ``None`` for every SKU."""
    if message == CHANGED_EVERY_SKU:
        return None
    return message.decode().split()


def decision(hold: Hold) -> dict[str, Any]:
    """A reservation's status as the API returns it (and as it is cached)."""
    body: dict[str, Any] = {
        "reservation_id": hold.reservation_id, "location_id": hold.location_id, "status": hold.status,
        "lines": [{"sku": sku, "qty": qty} for sku, qty in hold.lines],
        "remaining": [{"sku": sku, "qty": qty} for sku, qty in hold.remaining],
        "decided_at": rfc3339(hold.decided_ms),
    }
    if hold.status != "rejected":
        body["expires_at"] = rfc3339(hold.expires_ms)
    if hold.shortfalls:
        body["shortfalls"] = [s._asdict() for s in hold.shortfalls]
    if hold.channel:
        body["channel"] = hold.channel
    return body


#: Characters of a rejected payload a dead letter carries. JSON writes a character in at most 6 bytes
#: (``\u001f``), so a dead letter stays under the producer's 1,000,000-byte request limit however the
#: payload is made; a longer one would fail to send and stop the worker on every replay.
DEAD_LETTER_PAYLOAD_CHARS = 131_072


def dead_letter(reason: str, detail: str, topic: str, partition: int, offset: int, payload: str | None,
                ) -> dict[str, Any]:
    """A dead letter; a payload over :data:`DEAD_LETTER_PAYLOAD_CHARS` is cut there and marked with
    ``payload_truncated`` and its full length in ``payload_chars``; the detail says where the whole
    message is (the original stays at its offset)."""
    record: dict[str, Any] = {"reason": reason, "detail": detail, "topic": topic, "partition": partition,
                              "offset": offset, "payload": payload}
    if payload is not None and len(payload) > DEAD_LETTER_PAYLOAD_CHARS:
        record.update(payload=payload[:DEAD_LETTER_PAYLOAD_CHARS], payload_truncated=True, payload_chars=len(payload),
                      detail=f"{detail} (payload cut to its first {DEAD_LETTER_PAYLOAD_CHARS} of {len(payload)} "
                             f"characters; the whole message is at {topic}[{partition}]@{offset})")
    return record


def posting_record(posting: Posting) -> dict[str, Any]:
    """A posting as the ERP receives it on ``erp.movements`` (DESIGN.md)."""
    return {"posting_id": posting.posting_id, "sku": posting.sku, "location_id": posting.location_id,
            "movement_type": posting.movement_type, "qty": posting.qty,
            "window_start": rfc3339(posting.window_start_ms), "window_end": rfc3339(posting.window_end_ms),
            "revision": posting.revision, "event_count": posting.event_count, "event_ids": list(posting.event_ids)}
