"""The working state of one partition: every position, hold and remembered event id of the locations
the partition owns, applied to in plain Python and drained as packed state records once per flush.

Exactly-once effects on at-least-once input:

* an ``event_id`` (per leg) applied within the dedupe window has no further effect;
* every bucket record carries, per input topic, the offset of the last event it includes. After a
  crash inside a flush, part of the flush may be in the changelog while the input offsets were not
  committed: replayed events are then skipped per bucket, so nothing is applied twice;
* records are drained in the order buckets, holds, ids, marker: a prefix of a flush is consistent (a
  stored hold implies its buckets are stored; stored ids imply everything they cover is stored);
* the marker, written last, carries :attr:`PartitionState.inputs`: per input, the next offset the state
  has not consumed. Everything below it is in the state (or in outputs flushed before it), so a worker
  resumes every input exactly there, whatever offsets the consumer group committed.

ERP netting (:mod:`availability.netting`) lives inside each bucket and is stored in the bucket record:
a movement and its netting are written together or not at all. Windows are closed by :meth:`tick`
(the clock is the later of the tick's time and the latest event time seen), bucket by bucket, and a
bucket that already includes a tick (its watermark) does not close again when that tick is replayed.
Closed postings wait in the bucket's outbox: :attr:`Flush.postings` are the ones closed since the last
drain, to be sent only after the flush's records are written; :meth:`outbox` lists every posting not
yet confirmed (to re-send after a restart); :meth:`confirm` drops sent ones (the next flush rewrites
their buckets without them).

The change feed (:mod:`availability.feed`) works the same way: the first change of a position since
the last drain notes its ATS then (:meth:`_store`), and the drain compares it with the ATS now, so a
burst within a flush is one crossing. The crossings go to the outbox of the position's bucket, stored
in the same record as the position that crossed (a crossing is stored exactly when its cause is);
:attr:`Flush.changes` are to be sent only once the flush's records are written, :meth:`change_outbox`
lists those not yet confirmed (to re-send after a restart, unchanged), :meth:`confirm_changes` drops
sent ones.

A channel's network ATS (:mod:`availability.network`) takes both sides: the drain lists the positions
whose share of a watched channel changed (:attr:`Flush.network`, to send to their SKUs' partitions once
the records are written), and :meth:`apply_network` takes what owners sent about the SKUs this partition
sums (:mod:`availability.networkstate`), whose records and crossings the drain adds to the flush's.

The caller (the worker) writes the records in that order, the marker last.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from . import reservations as rsv
from .dedupe import RecentIds, id_hash
from .events import Adjustment, AnyEvent, Reservation, Sale, epoch_ms
from .feed import Change, FeedRules, crossings, outbox_from_wire, outbox_json, unsent
from .history import Cause
from .history import record as history_entry
from .ledger import HANDLERS, count_refusal
from .model import EMPTY, Position
from .netting import Netting, Posting, closing_boundary, window_start
from .network import Entry, NetworkRules
from .networkstate import NetworkSums
from .reservations import Hold
from .routing import Leg, line_ops
from .validation import Rejection
from .wire import (
    bucket_json,
    bucket_key,
    bucket_of,
    changes_key,
    hold_from_wire,
    hold_key,
    hold_to_wire,
    ids_from_wire,
    ids_key,
    ids_record_json,
    marker_key,
    position_from_wire,
    positions_json,
    record_json,
)

#: a bucket's records of changes since its full record, at most (:class:`_Bucket`). More slots encode
#: less (a peak day's flushes, against the positions changed: 32 slots 2.4 times, 64 1.8 times, no bound
#: 1.4 times) but leave more keys per bucket to store and restore.
CHAIN_SLOTS = 32


class Source(NamedTuple):
    """Where an input came from: the code of its topic (``availability.topics.TOPIC_CODE``), its offset."""

    code: int
    offset: int


class Flush(NamedTuple):
    records: list[tuple[str, str | None]]  # (key, JSON text or None to delete), in write order
    marker: tuple[str, str]
    cache: list[tuple[str, str, Position]]  # (sku, location, position) changed since the last snapshots()
    decisions: list[Hold]  # to publish only once ``records`` and ``marker`` are written
    postings: list[Posting]  # closed since the last drain: send only once ``records`` are written
    changes: Sequence[Change] = ()  # crossings since the last drain: send only once ``records`` are written
    history: Mapping[tuple[str, str], list[bytes]] = {}  # (sku, location) → entries since the last drain: write first
    network: Sequence[Entry] = ()  # positions whose channel shares changed: send once ``records`` are written


class _Bucket:
    """Positions of one location bucket, the input offsets they include, the hold decisions taken in
    the flush that wrote them (so a hold replayed after a crash inside that flush gets the same answer),
    the ERP netting of its positions, and the ids of the events it includes that no stored ids record
    holds yet (``ids``: see :meth:`PartitionState.apply`).

    Stored as a full record (version ``version``, -1: none stored yet) and, after it, a chain of records
    of changes (:data:`CHAIN_SLOTS` at most, each in a key of its own: ``availability.wire.changes_key``),
    each holding what changed since the record before it (``changed``: the SKUs; the netting keeps its
    own) and restored in order on top of the full record. The full record is written again once the
    chain is full or holds as many entries (positions, netting entries changed or closed) as the bucket:
    a restore reads at most twice the bucket. A chain of an older version stays in its keys until
    overwritten, and is not restored.

    Before the chain (2026-12-06) a bucket had one record of changes, cumulative (each drain encoded
    every position changed since the full record again), rewritten whole at half the bucket; it is slot
    0 of a chain now. On a peak day that encoded 5.8 times the positions that had changed: a
    distribution centre's bucket holds over a thousand SKUs, and each flush forced by a hold changes
    two or three of them."""

    __slots__ = ("chain", "chain_size", "changed", "decisions", "feed", "ids", "netting", "positions", "version",
                 "watermarks")

    def __init__(self, watermarks: dict[int, int] | None = None, positions: dict[str, Position] | None = None,
                 decisions: dict[str, list[Any]] | None = None, netting: Netting | None = None,
                 version: int = -1, ids: set[str] | None = None, feed: list[Change] | None = None):
        self.watermarks = watermarks or {}
        self.positions = positions or {}
        self.decisions = decisions or {}
        self.netting = netting or Netting()
        self.ids = ids or set()
        self.feed = feed or []  # the change feed's outbox: crossings of these positions not yet sent
        self.version = version
        self.chain = 0  # records of changes stored since the full record: the next one's slot
        self.chain_size = 0  # the entries they hold
        self.changed: set[str] = set()  # SKUs changed since the last record

    @property
    def rebase_due(self) -> bool:
        """Write the full record rather than a record of changes: none is stored yet, or the chain is full,
        or with these changes it would hold as many entries as the bucket."""
        return (self.version < 0 or self.chain >= CHAIN_SLOTS
                or self.chain_size + len(self.changed) + self.netting.changes
                >= len(self.positions) + len(self.netting.pending))

    def to_json(self) -> str:
        """The full record (JSON text), numbered one above the last; takes the decisions along (they travel
        with one flush)."""
        self.version += 1
        self.chain = self.chain_size = 0
        self.changed.clear()
        decisions, self.decisions = self.decisions, {}
        return bucket_json(self.version, self.watermarks, positions_json(self.positions), decisions,
                           self.netting.to_json() if self.netting else None, self.ids, self._feed_json())

    def changes_json(self) -> tuple[int, str]:
        """The record of the changes since the last record, and its slot in the chain."""
        slot, self.chain = self.chain, self.chain + 1
        self.chain_size += len(self.changed) + self.netting.changes
        positions = self.positions
        changed, self.changed = {sku: positions[sku] for sku in self.changed}, set()
        decisions, self.decisions = self.decisions, {}
        return slot, bucket_json(self.version, self.watermarks, positions_json(changed), decisions,
                                 self.netting.changes_json(), self.ids, self._feed_json(), slot)

    def apply_changes(self, value: dict[str, Any]) -> None:
        """Restore the chain's next record of changes (same version) on top of the records before it."""
        self.watermarks = {int(code): offset for code, offset in value["w"].items()}
        for sku, data in value["p"].items():
            self.positions[sku] = position_from_wire(data)
        self.decisions.update(value.get("d") or {})
        netting = value["n"]
        self.netting.apply_changes(netting)
        self.chain += 1
        self.chain_size += len(value["p"]) + len(netting["n"]) + len(netting.get("x") or ())
        self.ids.update(value.get("i") or ())
        self.feed = outbox_from_wire(value.get("f"))  # written whole in every record

    def _feed_json(self) -> str | None:
        return outbox_json(self.feed) if self.feed else None


class PartitionState:
    def __init__(self, partition: int, *, horizon_ms: int, dedupe_window_ms: int, window_ms: int = 300_000,
                 grace_ms: int = 60_000, history: bool = False, feed: FeedRules | None = None,
                 network: NetworkRules | None = None) -> None:
        self.partition = partition
        self.network = network or NetworkRules()
        self.sums = NetworkSums(partition, self.network)  # the network ATS of the SKUs this partition owns
        # (sku, location) → its history entries (JSON) applied since the last drain, when history is kept
        self._history: dict[tuple[str, str], list[bytes]] | None = {} if history else None
        self._cause: Cause | None = None  # what the change being applied comes from (history)
        self._entry_base = ""  # and the base of its entries' ids
        self._entry_no = 0
        self._now_ms = 0
        self.feed = feed or FeedRules()
        # (sku, location) changed since the last drain → (on_hand - reserved - safety_stock then, the first
        # cause, its bucket's address), and → the last cause (folded in from _dirty_positions per batch, not
        # per line). Tuples of ints and strings: nothing the garbage collector keeps scanning
        self._since: dict[tuple[str, str], tuple[int, str | None, tuple[str, int]]] = {}
        self._last_cause: dict[tuple[str, str], str | None] = {}
        self._feed_cause: str | None = None  # the event id behind the changes being made (the change feed's)
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.event_clock_ms = 0  # the latest occurred_at applied: event time closes windows too
        self._open: dict[int, set[tuple[str, int]]] = {}  # window start → buckets with pending entries of it
        self._postings: list[Posting] = []
        self.horizon_ms = horizon_ms
        self.hold_retention_ms = dedupe_window_ms
        self.buckets: dict[tuple[str, int], _Bucket] = {}
        self.holds: dict[str, Hold] = {}
        self.ids = RecentIds(dedupe_window_ms)
        self.generation = 0
        self._expiries: list[tuple[int, str]] = []
        self._dirty_buckets: set[tuple[str, int]] = set()
        # changed since the last snapshots() → the id of the event behind its last change (None: none)
        self._dirty_positions: dict[tuple[str, str], str | None] = {}
        self._dirty_holds: dict[str, None] = {}
        self._dropped_generations: list[int] = []
        self._decisions: list[Hold] = []
        self._touched: set[tuple[str, int]] = set()
        self._last_gc_ms = 0
        self.inputs: dict[int, int] = {}  # input topic code → next offset not yet consumed
        self._inputs_moved = False
        # records of changes loaded before the full record or the chain's records before them: address →
        # slot → record
        self._unplaced_changes: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
        self._flushed_at = 0  # ``now_ms`` of the last drain (restored from the marker)
        self._flushed_before = 0  # and of the drain before it
        self._applying: str | None = None  # the dedupe key of the event being applied

    # ---- reading -------------------------------------------------------------------------------
    def position(self, location_id: str, sku: str) -> Position:
        bucket = self.buckets.get((location_id, bucket_of(sku)))
        return bucket.positions.get(sku, EMPTY) if bucket else EMPTY

    def positions(self) -> Iterable[tuple[str, str, Position]]:
        for (location_id, _), bucket in self.buckets.items():
            for sku, position in bucket.positions.items():
                yield sku, location_id, position

    # ---- recovery ------------------------------------------------------------------------------
    def resnapshot(self) -> None:
        """Mark every position for the cache again (after recovery: the cache may have been lost)."""
        for sku, location_id, _ in self.positions():
            self._dirty_positions[(sku, location_id)] = None

    def load(self, key: str, value: Any) -> None:
        """Restore one state record of this partition (as written by :meth:`drain`)."""
        kind, _, rest = key.split("|", 2) if key.count("|") >= 2 else (key[0], "", "")
        if value is None:
            return
        if kind == "c":  # location|bucket, then |slot after slot 0 (location ids have no "|")
            location_id, bucket, *_ = rest.split("|")
            self._load_changes((location_id, int(bucket)), value)
        elif kind == "b":
            location_id, _, bucket = rest.rpartition("|")
            address = (location_id, int(bucket))
            netting = Netting.from_wire(value.get("n"))
            self.buckets[address] = _Bucket(
                {int(code): offset for code, offset in value["w"].items()},
                {sku: position_from_wire(data) for sku, data in value["p"].items()},
                value.get("d") or {}, netting, value.get("v", 0), set(value.get("i") or ()),
                outbox_from_wire(value.get("f")))
            for start in netting.windows():
                self._open.setdefault(start, set()).add(address)
            self._place_changes(address)
        elif kind in ("n", "o"):
            self.sums.load(kind, int(rest), value)
        elif kind == "h":
            hold = hold_from_wire(value)
            self.holds[hold.reservation_id] = hold
            if hold.live:
                heapq.heappush(self._expiries, (hold.expires_ms, hold.reservation_id))
        elif kind == "d":
            self.ids.restore(int(rest), *ids_from_wire(value))
            self.generation = max(self.generation, int(rest))
        elif key.startswith("m|"):
            self.generation = max(self.generation, value["generation"])
            self.inputs = {int(code): offset for code, offset in value.get("inputs", {}).items()}
            self.event_clock_ms = max(self.event_clock_ms, value.get("clock", 0))
            self._flushed_at, self._flushed_before = value.get("at", 0), value.get("since", 0)

    def _load_changes(self, address: tuple[str, int], value: dict[str, Any]) -> None:
        """Records load in any order: a record of changes waits for its full record and the chain's records
        before it."""
        self._unplaced_changes.setdefault(address, {})[value.get("s", 0)] = value
        if address in self.buckets:
            self._place_changes(address)

    def _place_changes(self, address: tuple[str, int]) -> None:
        """Restore the waiting records of changes that continue the bucket's chain, in order; drop those of
        an older version (their slots were not reached again since its full record)."""
        waiting = self._unplaced_changes.get(address)
        if not waiting:
            return
        bucket = self.buckets[address]
        chain = bucket.chain
        while (value := waiting.get(bucket.chain)) is not None and value.get("v", 0) == bucket.version:
            del waiting[bucket.chain]
            bucket.apply_changes(value)
        if bucket.chain > chain:  # the windows the restored records left open
            for start in bucket.netting.windows():
                self._open.setdefault(start, set()).add(address)
        for slot in [slot for slot, value in waiting.items() if value.get("v", 0) < bucket.version]:
            del waiting[slot]
        if not waiting:
            del self._unplaced_changes[address]

    # ---- input positions -----------------------------------------------------------------------
    def expects(self, code: int) -> int | None:
        """The next offset of input ``code`` this state has not consumed (None: it has consumed none)."""
        return self.inputs.get(code)

    def begin(self, code: int, offset: int) -> None:
        """Input ``code`` has never reached this state: consume it from ``offset`` (its beginning)."""
        self.inputs.setdefault(code, offset)

    def consumed(self, source: Source, *, quiet: bool = False) -> None:
        """Everything of ``source``'s input up to its offset is now in this state or its outputs.

        ``quiet``: not worth a marker of its own (a clock tick that changed nothing); the next flush
        records it anyway, and replaying a tick is harmless.
        """
        self.inputs[source.code] = source.offset + 1
        self._inputs_moved = self._inputs_moved or not quiet

    # ---- applying ------------------------------------------------------------------------------
    def apply(self, event: AnyEvent, leg: Leg, source: Source, now_ms: int) -> Rejection | None:
        """Apply one leg of a valid event; a :class:`Rejection` when it cannot be applied (state untouched).

        A duplicate (same ``event_id`` and leg within the window) is not a rejection: it is ignored.

        One event can reach the partition on two inputs (its own topic, and ``ats.routed`` when a copy
        came on a wrong key), and after a crash the inputs replay in any interleaving. The ids record is
        written after the buckets, so a flush cut short can store a bucket with the event's effect but
        not the id; the bucket record therefore carries the ids of its events until an ids record holds
        them, and a change to a bucket that already includes the event is skipped, whichever input brings
        the copy (each bucket on its own: the crash may have stored some of an event's buckets and not
        others).
        """
        key = leg.dedupe_key(event.event_id)
        digest = id_hash(key)
        if self.ids.seen(digest):
            return None
        self._applying = self._entry_base = key
        self._entry_no, self._now_ms, self._feed_cause = 0, now_ms, event.event_id
        try:
            if isinstance(event, Reservation):
                rejection = self._reservation(event, leg.location_id, source, now_ms)
            else:
                rejection = self._lines(event, leg, source)
                if rejection is None and isinstance(event, Sale) and event.reservation_id:
                    self._consume(event, source, now_ms)
            # A refused event is remembered too: its replay is refused again, never applied later.
            self.ids.add(digest)
            return rejection
        finally:
            self._seal_touched(source)
            self._applying = self._feed_cause = None

    def _lines(self, event: AnyEvent, leg: Leg, source: Source) -> Rejection | None:
        """Every line of a leg, all or none: only a count can refuse an event (outside the horizon), and a
        count is checked line by line before anything is applied. The hot path of the engine: each line is
        applied in one pass (position, history entry, netting), its SKU's bucket looked up once."""
        at = epoch_ms(event.occurred_at)
        location_id, event_id, horizon_ms = leg.location_id, event.event_id, self.horizon_ms
        operations = line_ops(event, leg.leg)
        if isinstance(event, Adjustment) and event.mode == "count":
            for sku, _, _ in operations:  # a count's SKUs are unique: each line sees its position as it is
                if not self._replayed(location_id, sku, source) and \
                        (refusal := count_refusal(self.position(location_id, sku), at, event_id)) is not None:
                    return Rejection("count_outside_horizon", f"{sku}: {refusal}")
        code, offset = source
        buckets, applying, kept, store = self.buckets, self._applying, self._history, self._store
        cause: Cause | None = None
        base, number, now_ms = self._entry_base, self._entry_no, self._now_ms
        start = window_start(at, self.window_ms)
        opened: set[tuple[str, int]] | None = None
        applied = False
        for sku, operation, qty in operations:
            address = (location_id, bucket_of(sku))
            bucket = buckets.get(address)
            if bucket is None:
                current = EMPTY
            elif bucket.watermarks.get(code, -1) >= offset or applying in bucket.ids:  # replayed (_replayed)
                continue
            else:
                current = bucket.positions.get(sku, EMPTY)
            position, moved = HANDLERS[operation](current, qty, at, event_id, horizon_ms)
            bucket = store(address, sku, position)
            applied = True
            if kept is not None:  # _record, unrolled: this runs for every line
                if cause is None:
                    cause = self._cause = Cause(event_id, event.type, at, event.source)
                entry = history_entry(f"{base}#{number}", cause, operation, now_ms, current, position)
                number += 1
                entries = kept.get((sku, location_id))
                if entries is None:
                    kept[(sku, location_id)] = [entry]
                else:
                    entries.append(entry)
            if moved:
                netting = bucket.netting
                for kind, moved_qty in moved:
                    netting.add(sku, kind, start, moved_qty, event_id)
                if opened is None:
                    opened = self._open.get(start)
                    if opened is None:
                        opened = self._open[start] = set()
                opened.add(address)
        self._entry_no = number
        if applied and at > self.event_clock_ms:
            self.event_clock_ms = at
        return None

    def _reservation(self, event: Reservation, location_id: str, source: Source, now_ms: int) -> Rejection | None:
        existing = self.holds.get(event.reservation_id)
        self._cause = Cause(event.event_id, event.type, epoch_ms(event.occurred_at), event.source,
                            event.reservation_id)
        if event.action == "release":
            if existing is None or existing.location_id != location_id or _after(existing.origin, source):
                return Rejection("unknown_reservation",
                                 f"reservation {event.reservation_id} is not held at {location_id}")
            if existing.live:
                released, freed = rsv.finish(existing, rsv.RELEASED, now_ms)
                self._unreserve(location_id, freed, source, now_ms, "release")
                self._put_hold(released)
            else:
                self._decisions.append(existing)
            return None
        if existing is not None:  # idempotent on reservation_id: the original outcome stands
            self._decisions.append(existing)
            return None
        lines = tuple((line.sku, line.qty) for line in event.lines or ())
        recorded = self._recorded_decision(location_id, lines, event.reservation_id)
        if recorded is not None:  # replayed after a crash inside the flush that decided it: same answer, same time
            short = tuple(rsv.Shortfall(*entry) for entry in recorded[1])
            now_ms = recorded[2] if len(recorded) > 2 else now_ms
        else:
            short = rsv.shortfalls(lines, {sku: self.position(location_id, sku).ats for sku, _ in lines})
        if short:
            hold = Hold(event.reservation_id, location_id, rsv.REJECTED, lines, (), now_ms, now_ms, short,
                        event.channel, event.event_id, (source.code, source.offset))
        else:
            hold = Hold(event.reservation_id, location_id, rsv.HELD, lines, lines,
                        now_ms + event.ttl_seconds * 1000, now_ms, (), event.channel, event.event_id,
                        (source.code, source.offset))
            for sku, qty in lines:
                self._change(location_id, sku, source, _reserve(qty, now_ms), "hold")
            heapq.heappush(self._expiries, (hold.expires_ms, hold.reservation_id))
        for sku, _ in lines:  # the decision travels with the buckets it reads
            decision = [hold.status, [list(x) for x in short], now_ms]
            self._bucket(location_id, sku).decisions[event.reservation_id] = decision
            self._touched.add((location_id, bucket_of(sku)))
        self._put_hold(hold)
        return None

    def _consume(self, sale: Sale, source: Source, now_ms: int) -> None:
        hold = self.holds.get(sale.reservation_id or "")
        if hold is None or not hold.live or hold.location_id != sale.location_id:
            return
        consumed, freed = rsv.consume(hold, {line.sku for line in sale.lines})
        if freed:
            self._cause = Cause(sale.event_id, sale.type, epoch_ms(sale.occurred_at), sale.source, hold.reservation_id)
            self._unreserve(hold.location_id, freed, source, now_ms, "hold_consumed")
            self._put_hold(consumed)

    def tick(self, now_ms: int, source: Source) -> None:
        """The owner's clock: expire holds due by ``now_ms``; forget ids and holds past the window."""
        try:
            while self._expiries and self._expiries[0][0] <= now_ms:
                _, reservation_id = heapq.heappop(self._expiries)
                hold = self.holds.get(reservation_id)
                if hold is not None and hold.live and hold.expires_ms <= now_ms:
                    expired, freed = rsv.finish(hold, rsv.EXPIRED, now_ms)
                    self._cause = Cause(None, "reservation", hold.expires_ms, None, reservation_id)
                    self._entry_base, self._entry_no, self._now_ms = f"expiry:{reservation_id}", 0, now_ms
                    self._feed_cause = hold.event_id  # what the feed names as the cause of an expiry
                    self._unreserve(hold.location_id, freed, source, now_ms, "hold_expired")
                    self._put_hold(expired)
            self._close_windows(now_ms, source)
        finally:
            self._feed_cause = None
            self._seal_touched(source)
        self._dropped_generations.extend(self.ids.expire(now_ms))
        if now_ms - self._last_gc_ms >= 60_000:
            self._last_gc_ms = now_ms
            cutoff = now_ms - self.hold_retention_ms
            for reservation_id in [r for r, h in self.holds.items() if not h.live and h.decided_ms < cutoff]:
                del self.holds[reservation_id]
                self._dirty_holds[reservation_id] = None

    def _close_windows(self, now_ms: int, source: Source) -> None:
        before = closing_boundary(max(now_ms, self.event_clock_ms), self.window_ms, self.grace_ms)
        for start in sorted(s for s in self._open if s < before):
            for address in self._open.pop(start):
                bucket = self.buckets[address]
                # A replayed tick whose closing the stored bucket already includes closes nothing there.
                if bucket.watermarks.get(source.code, -1) < source.offset:
                    self._postings.extend(bucket.netting.close(address[0], before, self.window_ms))
                    self._touched.add(address)
                for pending in bucket.netting.windows():  # still pending: keep them indexed
                    self._open.setdefault(pending, set()).add(address)

    def change_outbox(self) -> list[Change]:
        """Every crossing not yet confirmed as sent (after a restart: to send again, unchanged)."""
        return [*(change for bucket in self.buckets.values() for change in bucket.feed), *self.sums.outbox()]

    def confirm_changes(self, changes: Iterable[Change]) -> None:
        """These crossings were delivered: drop them from the outboxes (the next flush rewrites their buckets)."""
        network = [change for change in changes if change.location_id is None]
        if network:
            self.sums.confirm(network)
        sent_ids = ((change.location_id, change.sku, change.change_id) for change in changes
                    if change.location_id is not None)
        for address, sent in _by_bucket(sent_ids).items():
            bucket = self.buckets.get(address)
            kept = unsent(bucket.feed, sent) if bucket is not None else None
            if bucket is not None and kept is not None:
                bucket.feed = kept
                self._dirty_buckets.add(address)

    def confirm_outboxes(self) -> None:
        """Every posting and change record the outboxes hold was delivered: a loaded state whose outboxes
        were re-sent whole before anything else touched it. What :meth:`confirm` and
        :meth:`confirm_changes` of all of them do, without finding each one's bucket (a 1M-position load
        re-sends up to 1M of each: finding their buckets was 10% of its time, py-spy)."""
        for address, bucket in self.buckets.items():
            if bucket.netting.outbox or bucket.feed:
                bucket.netting.outbox = []
                bucket.feed = []
                self._dirty_buckets.add(address)
        self.sums.confirm(self.sums.outbox())  # the network crossings' outboxes (a few per SKU at most)

    def outbox(self) -> list[Posting]:
        """Every closed posting not yet confirmed as sent (after a restart: to send again, unchanged)."""
        return [posting for bucket in self.buckets.values() for posting in bucket.netting.outbox]

    def confirm(self, postings: Iterable[Posting]) -> None:
        """These postings were delivered: drop them from the outboxes (the next flush rewrites their buckets)."""
        sent_ids = ((posting.location_id, posting.sku, posting.posting_id) for posting in postings)
        for address, sent in _by_bucket(sent_ids).items():
            bucket = self.buckets.get(address)
            if bucket is not None and bucket.netting.confirm(sent):
                self._dirty_buckets.add(address)

    # ---- network ATS -----------------------------------------------------------------------------
    def apply_network(self, entries: Iterable[Entry], source: Source) -> None:
        """One ``ats.network`` record: positions of SKUs this partition owns, as their owners last saw them."""
        self.sums.apply(entries, source.offset)

    def network_snapshot(self) -> list[Entry]:
        """Every position a watched channel may sell from, as it is now (sent again when the partition is
        loaded: a crash after a flush's changelog and before its ``ats.network`` records loses them)."""
        if not self.network.channels:
            return []
        eligible = self.network.eligible
        return [Entry(sku, location_id, position.ats, position.updated_ms, None)
                for (location_id, _), bucket in self.buckets.items() if eligible(location_id)
                for sku, position in bucket.positions.items()]

    # ---- state helpers -------------------------------------------------------------------------
    def _recorded_decision(self, location_id: str, lines: tuple[tuple[str, int], ...],
                           reservation_id: str) -> list[Any] | None:
        for sku, _ in lines:
            bucket = self.buckets.get((location_id, bucket_of(sku)))
            if bucket is not None and reservation_id in bucket.decisions:
                return bucket.decisions[reservation_id]
        return None

    def _bucket(self, location_id: str, sku: str) -> _Bucket:
        address = (location_id, bucket_of(sku))
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = self.buckets[address] = _Bucket()
        return bucket

    def _replayed(self, location_id: str, sku: str, source: Source) -> bool:
        """Whether the bucket already includes this input offset, or this event by another input."""
        bucket = self.buckets.get((location_id, bucket_of(sku)))
        return bucket is not None and (bucket.watermarks.get(source.code, -1) >= source.offset
                                       or self._applying in bucket.ids)

    def _store(self, address: tuple[str, int], sku: str, position: Position) -> _Bucket:
        """``position`` becomes ``sku``'s in the bucket at ``address`` (``(location, bucket_of(sku))``);
        returns that bucket (made here for the bucket's first position)."""
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = self.buckets[address] = _Bucket()
        key = (sku, address[0])
        if key not in self._since:  # the change feed: the position as of the last drain, and the first cause
            prior = bucket.positions.get(sku, EMPTY)
            self._since[key] = (prior.net, self._feed_cause, address)
        bucket.positions[sku] = position
        bucket.changed.add(sku)
        self._touched.add(address)
        self._dirty_positions[key] = self._feed_cause
        return bucket

    def _change(self, location_id: str, sku: str, source: Source, change: Callable[[Position], Position],
                movement: str) -> None:
        if not self._replayed(location_id, sku, source):
            before = self.position(location_id, sku)
            after = change(before)
            self._store((location_id, bucket_of(sku)), sku, after)
            self._record(location_id, sku, movement, before, after)

    def _unreserve(self, location_id: str, freed: tuple[tuple[str, int], ...], source: Source, now_ms: int,
                   movement: str) -> None:
        for sku, qty in freed:
            self._change(location_id, sku, source, _reserve(-qty, now_ms), movement)

    def _record(self, location_id: str, sku: str, movement: str, before: Position, after: Position) -> None:
        """One history entry for a change just applied (when history is kept), caused by ``_cause``; its id
        is the same whenever the same event is applied again."""
        if self._history is None or self._cause is None:
            return
        entry_id = f"{self._entry_base}#{self._entry_no}"
        entry = history_entry(entry_id, self._cause, movement, self._now_ms, before, after)
        self._history.setdefault((sku, location_id), []).append(entry)
        self._entry_no += 1

    def _put_hold(self, hold: Hold) -> None:
        self.holds[hold.reservation_id] = hold
        self._dirty_holds[hold.reservation_id] = None
        self._decisions.append(hold)

    def _seal_touched(self, source: Source) -> None:
        for address in self._touched:
            bucket = self.buckets[address]
            bucket.watermarks[source.code] = max(bucket.watermarks.get(source.code, -1), source.offset)  # never back
            if self._applying is not None:
                bucket.ids.add(self._applying)
            self._dirty_buckets.add(address)
        self._touched.clear()

    # ---- flushing ------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._dirty_buckets or self._dirty_holds or self._decisions or self._dropped_generations
                    or self.ids.pending or self._dirty_positions or self._inputs_moved or self.sums.dirty)

    @property
    def deciding(self) -> bool:
        """Reservation decisions wait to be published: they must be flushed before anyone sees them."""
        return bool(self._decisions)

    def snapshots(self) -> list[tuple[str, str, Position]]:
        """``(sku, location, position)`` of every position changed since the last call (or drain): for the
        cache, which the worker writes per batch, ahead of the changelog (snapshots are idempotent, and a
        replay after a crash writes them again)."""
        cache = [(sku, location_id, self.position(location_id, sku)) for sku, location_id in self._dirty_positions]
        self._last_cause.update(self._dirty_positions)  # for the change feed (see _crossings)
        self._dirty_positions = {}
        return cache

    def history(self) -> dict[tuple[str, str], list[bytes]]:
        """``(sku, location)`` → its history entries applied since the last call (or drain), in the order
        applied, in the form the cache keeps (:func:`availability.history.record`); :meth:`drain` takes
        them into the flush (the worker writes them before the flush's records)."""
        if not self._history:
            return {}
        entries, self._history = self._history, {}
        return entries

    def recent_decisions(self) -> list[Hold]:
        """Holds decided since the flush before the last stored one (after a restart): a crash between the
        changelog write and the publication of a flush's decisions leaves them stored but unpublished, and
        their replay is then a duplicate that decides nothing. Publishing them again is idempotent."""
        since = self._flushed_before - _CLOCK_SLACK_MS
        return [hold for hold in self.holds.values() if hold.decided_ms >= since]

    def drain(self, now_ms: int) -> Flush | None:
        """Everything changed since the last drain, as state records (JSON text) in write order, or None."""
        if not self.dirty:
            return None
        p = self.partition
        changes, network = self._crossings(now_ms)
        records: list[tuple[str, str | None]] = []
        for address in sorted(self._dirty_buckets):
            bucket = self.buckets[address]
            if bucket.rebase_due:
                records.append((bucket_key(p, *address), bucket.to_json()))
            else:
                slot, text = bucket.changes_json()
                records.append((changes_key(p, *address, slot), text))
            if bucket.ids:  # this flush's ids record holds them from now on; ids loaded with a torn flush stay
                bucket.ids = {key for key in bucket.ids if key not in self.ids}
        sums, network_changes = self.sums.drain(now_ms)
        records.extend(sums)
        for reservation_id in self._dirty_holds:
            hold = self.holds.get(reservation_id)
            records.append((hold_key(p, reservation_id), record_json(hold_to_wire(hold)) if hold else None))
        generation = self.generation + 1
        ids = self.ids.seal(generation, now_ms)
        if ids is not None:
            self.generation = generation
            records.append((ids_key(p, generation), ids_record_json(now_ms, ids)))
        records.extend((ids_key(p, dropped), None) for dropped in self._dropped_generations)
        marker = {"generation": self.generation, "at": now_ms, "since": self._flushed_at, "clock": self.event_clock_ms,
                  "inputs": {str(code): offset for code, offset in self.inputs.items()}}
        self._flushed_before, self._flushed_at = self._flushed_at, now_ms
        flush = Flush(records, (marker_key(p), record_json(marker)), self.snapshots(), self._decisions,
                      self._postings, [*changes, *network_changes], self.history(), network)
        self._dirty_buckets, self._dirty_holds = set(), {}
        self._dropped_generations, self._decisions, self._postings = [], [], []
        self._inputs_moved = False
        return flush

    def _crossings(self, now_ms: int) -> tuple[list[Change], list[Entry]]:
        """The change feed's crossings since the last drain, put in their buckets' outboxes (per changed
        position, not per event: a burst within a flush is one crossing); and the positions whose share of
        a watched channel changed since the last drain, for the SKUs' partitions (``ats.network``)."""
        found: list[Change] = []
        network: list[Entry] = []
        last_cause = self._last_cause
        last_cause.update(self._dirty_positions)  # changed since the last snapshots()
        levels = bool(self.feed.low_stock)
        share_changed = self.network.share_changed if self.network.channels else None
        for key, (before, first, address) in self._since.items():
            sku, location_id = key
            bucket = self.buckets[address]
            position = bucket.positions[sku]
            net = position.net
            if share_changed is not None:
                was, ats = (before if before > 0 else 0), (net if net > 0 else 0)
                # an oversold shelf sold again is still at 0: most changes leave the ATS where it was
                if ats != was and share_changed(location_id, was, ats):
                    network.append(Entry(sku, location_id, ats, position.updated_ms, last_cause.get(key) or first))
            # most changes cross nothing: with no low-stock level to watch, only going to 0 or leaving it counts
            if not levels and (before > 0) == (net > 0):
                continue
            changes = crossings(self.feed, sku, location_id, max(0, before), position, first,
                                last_cause.get(key) or first, now_ms)
            if changes:
                bucket.feed.extend(changes)
                self._dirty_buckets.add(address)
                found.extend(changes)
        self._since, self._last_cause = {}, {}
        return found, network


#: wall clocks step back a little; publishing a decision twice is harmless
_CLOCK_SLACK_MS = 5_000


def _by_bucket(sent: Iterable[tuple[str, str, str]]) -> dict[tuple[str, int], set[str]]:
    """``(location, sku, id)`` of delivered outputs → the ids per bucket address whose outbox held them."""
    ids: dict[tuple[str, int], set[str]] = {}
    for location_id, sku, output_id in sent:
        ids.setdefault((location_id, bucket_of(sku)), set()).add(output_id)
    return ids


def _after(origin: tuple[int, int], source: Source) -> bool:
    """Whether ``origin`` comes later than ``source`` in the same input (same topic, same partition)."""
    return origin[0] == source.code and origin[1] > source.offset


def _reserve(qty: int, now_ms: int) -> Callable[[Position], Position]:
    """reserved += qty (never below 0)."""

    def change(position: Position) -> Position:
        return position._replace(reserved=max(0, position.reserved + qty), updated_ms=max(position.updated_ms, now_ms))

    return change
