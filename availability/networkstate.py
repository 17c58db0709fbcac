"""The network sums a partition keeps for the SKUs it owns (:mod:`availability.network`): per SKU, the last
ATS each location's owner sent, packed in :data:`BUCKETS` records per partition, with the network
crossings not yet sent in the outbox of the SKU's bucket.

Exactly once on at-least-once input, as the position buckets (:mod:`availability.shard`): an
``ats.network`` record is applied to a bucket only if the bucket does not already include its offset
(``w``), so a record replayed after a crash inside a flush changes nothing twice, and a crossing is
stored in the same record as the sums that crossed, before it is sent. Crossings are judged flush to
flush per SKU: the network ATS at the first change since the last drain against the network ATS at the
drain.

Records (written before the partition's marker, so a stored marker vouches for them):

=========================  ==========================================================================
``n|{p}|{bucket}``         full record ``{"v": version, "w": offset, "a": {sku: {location: ATS}},
                           "f"?: outbox}`` (only ATS > 0 is kept: an absent location offers nothing)
``o|{p}|{bucket}``         the changes since the full record ``v``: ``"a"`` holds the changed
                           locations (ATS 0: gone); ignored unless ``v`` matches; the full record is
                           written again, and this one deleted, once the changes reach half of it
=========================  ==========================================================================
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from .feed import Change, outbox_from_wire, outbox_json, unsent
from .network import Entry, NetworkRules, crossings
from .wire import record_json

#: SKU buckets per partition: a flush writes one record per touched bucket, and a flush touches most of
#: them (64 buckets doubled the changelog records of a 200k-line ingest run and halved its rate; 8 cost
#: nothing measurable). A full record holds 1/8 of the partition's in-stock (SKU, location) pairs, ~12
#: bytes each: past ~80,000 pairs a bucket, about 5 million in-stock positions over 8 partitions, it
#: outgrows a 1 MB record (raise the producer's and broker's limits, or this). Contract: changing it
#: re-keys the stored sums.
BUCKETS = 8


def bucket_of(sku: str) -> int:
    return zlib.crc32(sku.encode()) % BUCKETS


def full_key(partition: int, bucket: int) -> str:
    return f"n|{partition}|{bucket}"


def changes_key(partition: int, bucket: int) -> str:
    return f"o|{partition}|{bucket}"


class _Sums:
    """One bucket of SKUs: location → ATS per SKU, what changed since the full record, the outbox."""

    __slots__ = ("changed", "changes_stored", "feed", "size", "skus", "version", "watermark")

    def __init__(self, version: int = -1, watermark: int = -1, skus: dict[str, dict[str, int]] | None = None,
                 feed: list[Change] | None = None) -> None:
        self.version = version
        self.watermark = watermark  # the last ats.network offset applied to it
        self.skus = skus or {}
        self.size = sum(len(locations) for locations in self.skus.values())
        self.feed = feed or []
        self.changed: dict[str, dict[str, int]] = {}
        self.changes_stored = False

    def put(self, sku: str, location_id: str, ats: int) -> None:
        locations = self.skus.setdefault(sku, {})
        if ats:
            self.size += location_id not in locations
            locations[location_id] = ats
        elif locations.pop(location_id, None) is not None:
            self.size -= 1
            if not locations:
                del self.skus[sku]
        self.changed.setdefault(sku, {})[location_id] = ats

    def record(self) -> tuple[bool, str]:
        """(full?, the JSON text of the record to write): the full record when none is stored yet or the
        changes reach half of it, else the changes since it (cumulative: it replaces the last one)."""
        full = self.version < 0 or 2 * sum(map(len, self.changed.values())) >= self.size
        if full:
            self.version += 1
            self.changed = {}
        value: dict[str, Any] = {"v": self.version, "w": self.watermark, "a": self.skus if full else self.changed}
        text = record_json(value)
        if self.feed:
            text = text[:-1] + ',"f":' + outbox_json(self.feed) + "}"
        return full, text


class NetworkSums:
    """The ``ats.network`` side of one partition's state."""

    def __init__(self, partition: int, rules: NetworkRules) -> None:
        self.partition = partition
        self.rules = rules
        self.buckets: dict[int, _Sums] = {}
        self._dirty: set[int] = set()
        # SKU changed since the last drain → (its network ATS per channel then, the first event named)
        self._since: dict[str, tuple[tuple[int, ...], str | None]] = {}
        self._last: dict[str, tuple[int, int, str | None]] = {}  # → (offset, as_of_ms, event) of its last change
        self._unplaced: dict[int, dict[str, Any]] = {}  # changes loaded before their full record

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def totals(self, sku: str) -> tuple[int, ...]:
        """The SKU's network ATS per watched channel."""
        bucket = self.buckets.get(bucket_of(sku))
        return self.rules.totals(bucket.skus.get(sku, {}) if bucket else {})

    def apply(self, entries: Iterable[Entry], offset: int) -> None:
        """One ``ats.network`` record at ``offset``: each entry sets its location's ATS for its SKU; a bucket
        that already includes the offset (stored by a flush the crash cut short) is left alone."""
        touched: set[int] = set()
        for sku, location_id, ats, as_of_ms, cause in entries:
            address = bucket_of(sku)
            bucket = self.buckets.get(address)
            if bucket is None:
                bucket = self.buckets[address] = _Sums()
            elif bucket.watermark >= offset:
                continue
            locations = bucket.skus.get(sku)
            if (locations.get(location_id, 0) if locations else 0) == ats:
                continue
            if sku not in self._since:
                self._since[sku] = (self.rules.totals(locations or {}), cause)
            bucket.put(sku, location_id, ats)
            self._last[sku] = (offset, as_of_ms, cause)
            touched.add(address)
        for address in touched:
            self.buckets[address].watermark = offset
        self._dirty |= touched

    def drain(self, now_ms: int) -> tuple[list[tuple[str, str | None]], list[Change]]:
        """The crossings since the last drain (put in their buckets' outboxes), and the records to write."""
        changes: list[Change] = []
        for sku, (before, first) in self._since.items():
            offset, as_of_ms, last = self._last[sku]
            found = crossings(self.rules, sku, before, self.totals(sku), f"network@{self.partition}:{offset}",
                              as_of_ms, now_ms, (first, last))
            if found:
                address = bucket_of(sku)
                self.buckets[address].feed.extend(found)
                self._dirty.add(address)
                changes.extend(found)
        self._since, self._last = {}, {}
        records: list[tuple[str, str | None]] = []
        for address in sorted(self._dirty):
            bucket = self.buckets[address]
            full, text = bucket.record()
            if full:
                records.append((full_key(self.partition, address), text))
                if bucket.changes_stored:
                    records.append((changes_key(self.partition, address), None))
                    bucket.changes_stored = False
            else:
                records.append((changes_key(self.partition, address), text))
                bucket.changes_stored = True
        self._dirty = set()
        return records, changes

    def load(self, kind: str, bucket: int, value: dict[str, Any]) -> None:
        """Restore a record written by :meth:`drain` (records come in any order)."""
        if kind == "n":
            skus = {sku: dict(locations) for sku, locations in value["a"].items()}
            self.buckets[bucket] = _Sums(value["v"], value["w"], skus, outbox_from_wire(value.get("f")))
            changes = self._unplaced.pop(bucket, None)
            if changes is not None:
                self._load_changes(bucket, changes)
        else:
            self._load_changes(bucket, value)

    def _load_changes(self, address: int, value: dict[str, Any]) -> None:
        bucket = self.buckets.get(address)
        if bucket is None:
            self._unplaced[address] = value
            return
        bucket.changes_stored = True
        if value["v"] != bucket.version:
            return
        for sku, locations in value["a"].items():
            for location_id, ats in locations.items():
                bucket.put(sku, location_id, ats)
        bucket.watermark = value["w"]
        bucket.feed = outbox_from_wire(value.get("f"))  # written whole in every record

    def outbox(self) -> list[Change]:
        return [change for bucket in self.buckets.values() for change in bucket.feed]

    def confirm(self, changes: Iterable[Change]) -> None:
        """These crossings were delivered: drop them (the next flush rewrites their buckets)."""
        sent: dict[int, set[str]] = {}
        for change in changes:
            sent.setdefault(bucket_of(change.sku), set()).add(change.change_id)
        for address, ids in sent.items():
            bucket = self.buckets.get(address)
            kept = unsent(bucket.feed, ids) if bucket is not None else None
            if bucket is not None and kept is not None:
                bucket.feed = kept
                self._dirty.add(address)
