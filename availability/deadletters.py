"""Dead letters you can work with: reading ``inventory.dead-letter`` newest first, and re-submitting records.

Pure: the adapters (the API's aiokafka reader) fetch records when :func:`scan` asks for them, so the
paging, filtering and merging rules are tested without a broker.

* A dead letter's **id** is its own place in ``inventory.dead-letter``, ``"<partition>:<offset>"``: stable
  for as long as the topic retains it. ``topic``/``partition``/``offset`` are where the original came from.
* **Newest first**, by the dead-letter record's timestamp (when the worker refused it), merged over the
  topic's partitions. Each partition is read backwards in chunks; a page takes the newest head among the
  partitions until it has ``limit`` records, so the records a page shows are, per partition, a run just
  below the cursor, and the next cursor is the offset each partition resumes below.
* A request is **bounded**: it reads at most ``budget`` records; when filters leave the page short after
  that, the page comes back short with a cursor to continue (never a scan of the whole topic per call).
* **Redrive**: an uncorrected record is validated as an event of the topic it arrived on (the same record,
  on the same topic); a correction is validated as any ingested event and goes to its type's topic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from .events import AnyEvent
from .topics import INPUT_TOPICS, TOPIC_FOR_TYPE
from .validation import REASONS, EventRejected, Rejection, validate_event
from .wire import rfc3339

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_REDRIVE = 500
SCAN_BUDGET = 20_000
CHUNK = 500
#: list items carry the payload up to this many characters (``GET /v1/deadletters/{id}`` has all of it)
PAYLOAD_PREVIEW = 2_000
#: the Kafka header a redriven event carries: the id of the dead letter it re-submits
REDRIVE_HEADER = "ats-redrive-of"
#: a record of the dead-letter topic that is not a dead letter of the contract's shape
UNREADABLE = "unreadable_dead_letter"
#: what a dead letter's ``reason`` can be (the filters accept only these)
REASONS_LISTED: tuple[str, ...] = (*REASONS, UNREADABLE)


class DeadLetterError(ValueError):
    """A filter, id, cursor or correction the caller got wrong (the API answers 422 with the field)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class DeadLetter:
    """One record of ``inventory.dead-letter`` and where it sits there."""

    partition: int
    offset: int
    timestamp_ms: int
    reason: str
    detail: str
    topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    payload: str | None

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_record(partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> DeadLetter:
    """A record of the dead-letter topic; one not of the contract's shape is listed as ``unreadable``."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("reason"), str)):
        text = (value or b"").decode("utf-8", "backslashreplace")
        return DeadLetter(partition, offset, timestamp_ms, UNREADABLE, "not a dead-letter record", None, None, None,
                          text)
    return DeadLetter(partition, offset, timestamp_ms, data["reason"], str(data.get("detail", "")),
                      _str(data.get("topic")), _int(data.get("partition")), _int(data.get("offset")),
                      _str(data.get("payload")))


def to_item(letter: DeadLetter, *, full_payload: bool = False) -> dict[str, Any]:
    """A dead letter as the API and ``ats deadletters`` show it: the contract's fields plus its id and time."""
    payload = letter.payload
    shown = payload if payload is None or full_payload or len(payload) <= PAYLOAD_PREVIEW else payload[:PAYLOAD_PREVIEW]
    return {"id": letter.id, "dead_lettered_at": rfc3339(letter.timestamp_ms), "reason": letter.reason,
            "detail": letter.detail, "topic": letter.topic, "partition": letter.origin_partition,
            "offset": letter.origin_offset, "payload": shown, "payload_truncated": shown != payload}


# ---- filters, ids, cursors -------------------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    reasons: frozenset[str] = frozenset()
    topic: str | None = None
    since_ms: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.reasons or letter.reason in self.reasons)
                and (self.topic is None or letter.topic == self.topic)
                and (self.since_ms is None or letter.timestamp_ms >= self.since_ms))


_RELATIVE = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_since(text: str, now_ms: int) -> int:
    """``since``: an RFC 3339 time with an offset, or a duration back from now (``90s``, ``15m``, ``6h``, ``7d``)."""
    if match := _RELATIVE.match(text):
        return now_ms - int(match[1]) * _UNIT_MS[match[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise DeadLetterError("since", "an RFC 3339 time with an offset (2026-11-24T10:00:00Z) or a duration "
                                       "back from now (90s, 15m, 6h, 7d)")
    return int(moment.timestamp() * 1000)


def parse_id(text: str) -> tuple[int, int]:
    """``"3:17"`` → (3, 17): a dead letter's partition and offset in ``inventory.dead-letter``."""
    partition, sep, offset = text.partition(":")
    if not (sep and partition.isdigit() and offset.isdigit() and len(partition) <= 6 and len(offset) <= 19):
        raise DeadLetterError("ids", f"{text[:40]!r} is not a dead-letter id (<partition>:<offset>, e.g. 3:17)")
    return int(partition), int(offset)


def encode_cursor(upper: Mapping[int, int]) -> str:
    """Where each partition resumes: records below these offsets are still to come."""
    raw = orjson.dumps({"v": 1, "below": sorted([p, o] for p, o in upper.items())})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> dict[int, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        below = {int(p): int(o) for p, o in data["below"]} if data.get("v") == 1 else None
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        below = None
    if below is None or any(p < 0 or o < 0 for p, o in below.items()):
        raise DeadLetterError("cursor", "not a cursor this API gave out (pass next_cursor back unchanged)")
    return below


# ---- the scan ---------------------------------------------------------------------------------------
class Fetch(NamedTuple):
    """Read records ``start`` ≤ offset < ``end`` of one dead-letter partition."""

    partition: int
    start: int
    end: int


@dataclass
class Page:
    items: list[DeadLetter]
    #: where the next page starts; None when every partition has been read to its lower bound
    cursor: dict[int, int] | None
    scanned: int


@dataclass
class _Partition:
    low: int
    below: int  # records below this offset are not read yet
    heads: list[DeadLetter] = field(default_factory=list)  # matching records read, newest (highest offset) first

    def resume(self) -> int:
        return self.heads[0].offset + 1 if self.heads else self.below

    def needs(self, partition: int, chunk: int) -> Fetch | None:
        """The chunk just below what was read, while no matching record waits and some are left."""
        if self.heads or self.below <= self.low:
            return None
        return Fetch(partition, max(self.low, self.below - chunk), self.below)


Fetched = Mapping[int, Iterable[DeadLetter]]
Scan = Generator[list[Fetch], Fetched, Page]


def scan(bounds: Mapping[int, tuple[int, int]], flt: Filter, *, limit: int, budget: int = SCAN_BUDGET,
         chunk: int = CHUNK) -> Scan:
    """Newest first over ``bounds`` (partition → (low, below)): yields the fetches it needs, one per
    partition at most, and is sent back the records read (partition → records); returns the page."""
    parts = {p: _Partition(low, below) for p, (low, below) in bounds.items()}
    items: list[DeadLetter] = []
    scanned = 0
    while len(items) < limit:
        wanted = [fetch for p, part in parts.items() if (fetch := part.needs(p, chunk))]
        if wanted:
            if scanned >= budget:
                break
            fetched = yield wanted
            for fetch in wanted:
                records = [r for r in fetched.get(fetch.partition, ()) if fetch.start <= r.offset < fetch.end]
                scanned += len(records)
                part = parts[fetch.partition]
                part.heads = sorted((r for r in records if flt.matches(r)), key=lambda r: -r.offset)
                part.below = fetch.start
            continue
        live = [p for p, part in parts.items() if part.heads]
        if not live:
            break
        newest = max(live, key=lambda p: (parts[p].heads[0].timestamp_ms, p, parts[p].heads[0].offset))
        items.append(parts[newest].heads.pop(0))
    cursor = {p: part.resume() for p, part in parts.items()}
    done = all(part.resume() <= part.low for part in parts.values())
    return Page(items, None if done else cursor, scanned)


# ---- redrive ----------------------------------------------------------------------------------------
class Resubmission(NamedTuple):
    """What re-submitting one dead letter came to: an event to produce, or a rejection with its reason."""

    letter: DeadLetter
    event: AnyEvent | None
    raw: bytes | None
    rejection: Rejection | None
    corrected: bool


def resubmit(letter: DeadLetter, correction: bytes | None = None) -> Resubmission:
    """Validate a dead letter again, as the record it was (on its topic) or as the correction given."""
    if correction is None and letter.topic not in INPUT_TOPICS:
        where = letter.topic or "an unknown topic"
        return Resubmission(letter, None, None, Rejection(
            "not_redrivable", f"the original came from {where}, not an input topic; send a correction"), False)
    raw = correction if correction is not None else (letter.payload or "").encode("utf-8", "surrogateescape")
    expected = None if correction is not None else INPUT_TOPICS[letter.topic or ""]
    try:
        event = validate_event(raw, expected_type=expected)
    except EventRejected as exc:
        return Resubmission(letter, None, raw, exc.rejection, correction is not None)
    return Resubmission(letter, event, raw, None, correction is not None)


def destination(resubmission: Resubmission) -> str | None:
    return TOPIC_FOR_TYPE[resubmission.event.type] if resubmission.event is not None else None


def report_item(resubmission: Resubmission, *, produced: bool) -> dict[str, Any]:
    """One line of a redrive report: what was accepted (and where it went) or rejected again, and why."""
    letter, rejection = resubmission.letter, resubmission.rejection
    item: dict[str, Any] = {"id": letter.id, "reason": letter.reason, "topic": letter.topic,
                            "partition": letter.origin_partition, "offset": letter.origin_offset,
                            "corrected": resubmission.corrected,
                            "status": "accepted" if rejection is None else "rejected", "produced": produced}
    if resubmission.event is not None:
        item["event_id"] = resubmission.event.event_id
        item["produced_to"] = destination(resubmission)
    if rejection is not None:
        item["rejection"] = {"reason": rejection.reason, "detail": rejection.detail,
                             "errors": [e._asdict() for e in rejection.errors]}
    return item


def not_found_item(dead_letter_id: str) -> dict[str, Any]:
    return {"id": dead_letter_id, "reason": None, "topic": None, "partition": None, "offset": None,
            "corrected": False, "status": "not_found", "produced": False}


def summarize(items: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"accepted": 0, "rejected": 0, "not_found": 0}
    for item in items:
        counts[item["status"]] += 1
    return counts


def oldest_first(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """The order a redrive re-submits in: the order the records were refused."""
    return sorted(letters, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def correction_bytes(correction: Any) -> bytes:
    """A corrected payload: a JSON object (the event), or a string holding one, as the raw message."""
    if isinstance(correction, str):
        return correction.encode()
    return orjson.dumps(correction)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
