"""ERP netting: applied movements summed per (SKU, location, movement type, event-time window) into
postings with deterministic ids.

One :class:`Netting` lives in each position bucket (:mod:`availability.shard`) and is stored in the
bucket's state record, so what a bucket has netted is always consistent with the positions and input
offsets stored beside it: a flush cut short by a crash never separates a movement from its netting.

Life of a posting:

* **pending**: ``add`` sums a movement into the entry of its window (``window_start`` = occurred time
  rounded down to the window). Only windows still pending are kept;
* **closed**: ``close(before)`` turns every entry of a window starting before ``before`` into a
  :class:`Posting` (the caller computes ``before`` from its clock and the grace, see
  :func:`closing_boundary`). Closed postings go to the **outbox**, which is stored with the bucket: a
  posting is decided once, written to the changelog, and only then sent (by the worker). After a crash
  the outbox is sent again as stored: same id, same quantity;
* **sent**: ``confirm`` drops postings from the outbox once the worker has delivered them.

Revisions without remembering every posting. ``closed_before`` is the bucket's highest closing
boundary: every posting this bucket ever made has ``window_start < closed_before``. So an entry of a
window at or after it can never have been posted: it closes as **revision 1**. An entry of an earlier
window may be a late event behind a posting already sent: it closes as a further revision,
``2 + late_closes`` where ``late_closes`` counts the closes of this bucket that posted such entries.
Revisions of one window therefore only grow (1, then 2, 3, … possibly with gaps), and
``(sku, location, type, window_start, revision)`` (the posting id) names one quantity forever, with no
horizon after which a late event could reuse an id. A window whose movements net to 0 posts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

#: movement types the ERP receives (reservations post nothing)
MOVEMENT_TYPES = ("sale", "return", "return_damaged", "receipt", "transfer_out", "transfer_in", "adjustment")

Entry = tuple[str, str, int]  # (sku, movement_type, window_start_ms)

#: event ids a posting names at most: the first ones netted into it. With ``event_count`` they lead from
#: a posting to its events (the position's history, ``GET /v1/positions/{sku}/{location}/history``,
#: has every one); all of a best seller's window would make every pending entry as big as its events.
EVENT_IDS = 5


class Posting(NamedTuple):
    posting_id: str
    sku: str
    location_id: str
    movement_type: str
    qty: int
    window_start_ms: int
    window_end_ms: int
    revision: int
    event_count: int
    event_ids: tuple[str, ...] = ()  # the first :data:`EVENT_IDS` events netted into it


def window_start(occurred_ms: int, window_ms: int) -> int:
    return occurred_ms - occurred_ms % window_ms


def closing_boundary(clock_ms: int, window_ms: int, grace_ms: int) -> int:
    """Windows starting before the result are closed at ``clock_ms``: they ended at least ``grace_ms`` ago."""
    return window_start(clock_ms - grace_ms, window_ms)


def posting_id(sku: str, location_id: str, movement_type: str, window_start_ms: int, revision: int) -> str:
    """Deterministic: the same (position, type, window, revision) always gives the same id."""
    text = "\x1f".join((sku, location_id, movement_type, str(window_start_ms), str(revision)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_NOTHING: tuple[int, int, tuple[str, ...]] = (0, 0, ())


class Netting:
    """The netting of one position bucket: pending window entries, the outbox, revision bookkeeping."""

    __slots__ = ("_changed", "_closed", "closed_before", "late_closes", "outbox", "pending")

    def __init__(self, pending: dict[Entry, tuple[int, int, tuple[str, ...]]] | None = None,
                 outbox: list[Posting] | None = None, closed_before: int = 0, late_closes: int = 0) -> None:
        # entry → (qty, event_count, first event ids): tuples of ints and strings, which the garbage
        # collector stops tracking (lists it would scan on every collection, one per pending entry: the
        # worker slowed down as its state grew)
        self.pending = pending or {}
        self.outbox = outbox or []
        self.closed_before = closed_before
        self.late_closes = late_closes
        self._changed: set[Entry] = set()  # pending entries changed since the last record (see changes_json)
        self._closed: set[Entry] = set()  # entries closed since the last record (see changes_json)

    def __bool__(self) -> bool:
        return bool(self.pending or self.outbox or self.closed_before)

    def add(self, sku: str, movement_type: str, window_start_ms: int, qty: int, event_id: str | None = None) -> None:
        entry = (sku, movement_type, window_start_ms)
        total, count, ids = self.pending.get(entry, _NOTHING)
        if event_id is not None and len(ids) < EVENT_IDS and event_id not in ids:
            ids = (*ids, event_id)
        self.pending[entry] = (total + qty, count + 1, ids)
        self._changed.add(entry)
        self._closed.discard(entry)

    def windows(self) -> set[int]:
        return {start for _, _, start in self.pending}

    def close(self, location_id: str, before_ms: int, window_ms: int) -> list[Posting]:
        """Close every pending entry of a window starting before ``before_ms``; the postings also go to the outbox."""
        due = sorted(entry for entry in self.pending if entry[2] < before_ms)
        if not due:
            return []
        late_revision = 2 + self.late_closes
        posted: list[Posting] = []
        any_late = False
        for entry in due:
            qty, count, ids = self.pending.pop(entry)
            self._changed.discard(entry)
            self._closed.add(entry)
            sku, movement_type, start = entry
            late = start < self.closed_before
            any_late = any_late or late
            if qty == 0:
                continue
            revision = late_revision if late else 1
            posted.append(Posting(posting_id(sku, location_id, movement_type, start, revision), sku, location_id,
                                  movement_type, qty, start, start + window_ms, revision, count, ids))
        self.late_closes += any_late
        self.closed_before = max(self.closed_before, before_ms)
        self.outbox.extend(posted)
        return posted

    def confirm(self, ids: set[str]) -> bool:
        """Drop sent postings from the outbox; whether anything was dropped."""
        kept = [posting for posting in self.outbox if posting.posting_id not in ids]
        changed = len(kept) != len(self.outbox)
        self.outbox = kept
        return changed

    # ---- wire ----------------------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        return {"n": [[sku, kind, start, qty, count, list(ids)]
                      for (sku, kind, start), (qty, count, ids) in self.pending.items()],
                "o": [list(posting) for posting in self.outbox], "c": self.closed_before, "s": self.late_closes}

    @property
    def changes(self) -> int:
        """Entries changed or closed since the last record (:meth:`to_json` or :meth:`changes_json`)."""
        return len(self._changed) + len(self._closed)

    def to_json(self) -> str:
        """:meth:`to_wire` as JSON text (orjson, in one call: a flush writes every entry changed since)."""
        self._changed.clear()
        self._closed.clear()
        return orjson.dumps({"n": [(*entry, *value) for entry, value in self.pending.items()], "o": self.outbox,
                             "c": self.closed_before, "s": self.late_closes}, default=tuple).decode()

    def changes_json(self) -> str:
        """What changed since the last record (:meth:`to_json`, or this one), which this one follows
        (:meth:`apply_changes`): the pending entries changed (``n``), those closed (``x``), and the outbox
        and revision bookkeeping as they are now (``o``, ``c``, ``s``: small). Closing windows therefore
        costs a record of changes, not a rewrite of the whole bucket (windows close every few seconds of a
        busy day)."""
        pending = self.pending
        changed, closed = self._changed, self._closed
        self._changed, self._closed = set(), set()
        return orjson.dumps({"n": [(*entry, *pending[entry]) for entry in changed], "x": list(closed),
                             "o": self.outbox, "c": self.closed_before, "s": self.late_closes},
                            default=tuple).decode()

    def apply_changes(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`changes_json` wrote on top of the records it follows (stored: nothing to
        write again)."""
        for sku, kind, start in data.get("x") or ():
            self.pending.pop((sku, kind, int(start)), None)
        for row in data["n"]:
            entry, value = _pending(row)
            self.pending[entry] = value
        if "o" in data:
            self.outbox = [_posting(row) for row in data["o"]]
            self.closed_before, self.late_closes = int(data["c"]), int(data["s"])

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None) -> Netting:
        if not data:
            return cls()
        pending = dict(map(_pending, data["n"]))
        return cls(pending, [_posting(row) for row in data["o"]], int(data["c"]), int(data["s"]))


def _pending(row: list[Any]) -> tuple[Entry, tuple[int, int, tuple[str, ...]]]:
    """A pending entry as stored: ``[sku, kind, start, qty, count, ids]`` (``ids`` missing in records
    written before postings named their events)."""
    sku, kind, start, qty, count, *ids = row
    return (sku, kind, start), (qty, count, tuple(ids[0]) if ids else ())  # integers as written (_encode)


def _posting(row: list[Any]) -> Posting:
    """A posting as stored (``event_ids`` missing in records written before postings named their events)."""
    posting_id, sku, location_id, kind, qty, start, end, revision, count, *ids = row
    return _new(Posting, (posting_id, sku, location_id, kind, qty, start, end, revision, count,
                          tuple(ids[0]) if ids else ()))  # tuple.__new__, as _make: one per posting of a load


_new = tuple.__new__


def totals(postings: Iterable[Posting]) -> dict[tuple[str, str], int]:
    """Σ posted on-hand-moving quantity per (sku, location): what conservation compares with on_hand."""
    out: dict[tuple[str, str], int] = {}
    for posting in postings:
        if posting.movement_type != "return_damaged":
            key = (posting.sku, posting.location_id)
            out[key] = out.get(key, 0) + posting.qty
    return out
