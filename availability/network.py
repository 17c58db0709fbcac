"""A channel's network ATS crossing a threshold: the rules, and the records that carry positions to the
partition that sums them.

Network ATS of a channel for a SKU = Σ over the channel's eligible locations of the location's share,
max(0, ATS - buffer) (:mod:`availability.channels`). A SKU's positions are owned by the partitions of
their locations; the sum is kept by the partition that owns the SKU (:func:`sku_partition`, Kafka's
default partitioner on the SKU, as for a location). So:

* at each flush, the owner of a position whose share of a watched channel changed since the flush before
  tells the SKU's partition the position's ATS now (an :class:`Entry`), packed into one record per
  destination partition (:func:`network_records`) on the internal topic ``ats.network``, sent after its
  changelog is written; an owner that loads a partition sends every position it owns again (a crash
  between its changelog and that send would otherwise lose the last word);
* the SKU's partition keeps, per SKU, the last ATS of each location (:mod:`availability.networkstate`),
  sums the shares per channel, and at its own flush compares each changed SKU's network ATS with the flush
  before (:func:`crossings`): a burst is one record.

Entries are values, not deltas: an entry sent again (a restart re-sends everything) changes nothing.

=============================  =======================================================  ===========
kind                           when (network ATS of the channel, flush to flush)         threshold
=============================  =======================================================  ===========
``network_out_of_stock``       > 0 → 0                                                  1
``network_back_in_stock``      0 → > 0                                                  1
``network_low_stock``          ≥ the channel's ``low_stock`` → below it (0 included)    the level
``network_low_stock_recovered`` below the level → ≥ it                                   the level
=============================  =======================================================  ===========

Every channel in the channels file is watched (its 0 crossings; its level when it has one); with no
channel, nothing is (and nothing is sent). The record's ``location_id`` is null; ``change_id`` hashes
(sku, channel, kind, the ``ats.network`` partition and offset of the record that last changed the SKU
before the crossing): the same crossing gets the same id wherever it is computed again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .channels import ChannelView, ChannelViews
from .feed import Change, change_id
from .routing import owner_partition
from .wire import record_json

NETWORK_OUT_OF_STOCK = "network_out_of_stock"
NETWORK_BACK_IN_STOCK = "network_back_in_stock"
NETWORK_LOW_STOCK = "network_low_stock"
NETWORK_LOW_STOCK_RECOVERED = "network_low_stock_recovered"
KINDS = (NETWORK_OUT_OF_STOCK, NETWORK_BACK_IN_STOCK, NETWORK_LOW_STOCK, NETWORK_LOW_STOCK_RECOVERED)

#: the format of an ``ats.network`` record (``"v"``): a reader refuses any other
RECORD_VERSION = 1
#: entries per ``ats.network`` record at most (~60 bytes each: records stay well under 1 MB)
RECORD_ENTRIES = 5_000


class Watched(NamedTuple):
    channel: str
    view: ChannelView
    level: int  # the channel's low_stock: 0 watches only the 0 crossings


class NetworkRules:
    """The channels whose network ATS is watched, in name order (a SKU's sums are kept in this order).

    Each location's buffer per channel is looked up once (``None``: the location does not sell to it):
    these run for every position whose ATS moved in a flush, and for every location of a changed SKU."""

    __slots__ = ("_buffers", "channels")

    def __init__(self, channels: tuple[Watched, ...] = ()) -> None:
        self.channels = channels
        self._buffers: dict[str, tuple[int | None, ...]] = {}

    def buffers(self, location_id: str) -> tuple[int | None, ...]:
        """The location's buffer for each watched channel, ``None`` where it is not eligible."""
        found = self._buffers.get(location_id)
        if found is None:
            found = self._buffers[location_id] = tuple(view.buffer(location_id) if view.eligible(location_id) else None
                                                       for _, view, _ in self.channels)
        return found

    def shares(self, location_id: str, ats: int) -> tuple[int, ...]:
        """What the location offers each watched channel: 0 if not eligible, else max(0, ATS - buffer)."""
        return tuple(0 if buffer is None or ats <= buffer else ats - buffer for buffer in self.buffers(location_id))

    def share_changed(self, location_id: str, before: int, after: int) -> bool:
        """Whether the position's share of any watched channel differs between the two ATS values."""
        if before == after:
            return False
        for buffer in self.buffers(location_id):
            if buffer is not None and (before - buffer if before > buffer else 0) != (after - buffer if after > buffer
                                                                                      else 0):
                return True
        return False

    def eligible(self, location_id: str) -> bool:
        """Whether the location sells to any watched channel."""
        return any(buffer is not None for buffer in self.buffers(location_id))

    def totals(self, ats_by_location: dict[str, int]) -> tuple[int, ...]:
        """Network ATS per watched channel: Σ over eligible locations of max(0, ATS - buffer)."""
        sums = [0] * len(self.channels)
        for location_id, ats in ats_by_location.items():
            for index, buffer in enumerate(self.buffers(location_id)):
                if buffer is not None and ats > buffer:
                    sums[index] += ats - buffer
        return tuple(sums)


def network_rules(views: ChannelViews) -> NetworkRules:
    """Every channel of the channels file, in name order, with its ``low_stock`` level."""
    return NetworkRules(tuple(Watched(name, views.channels[name], views.channels[name].low_stock)
                              for name in views.names))


class Entry(NamedTuple):
    """What a position's owner tells the SKU's partition: the position's ATS now."""

    sku: str
    location_id: str
    ats: int
    as_of_ms: int  # the position's updated_ms
    cause: str | None  # the id of the event behind its last change (None: sent again on a load)


def crossings(rules: NetworkRules, sku: str, before: Sequence[int], after: Sequence[int], cause: str, as_of_ms: int,
              now_ms: int, event_ids: Iterable[str | None] = ()) -> list[Change]:
    """A SKU's network crossings between the last flush (``before``: network ATS per watched channel) and now
    (``after``). ``cause`` names what last changed the SKU (the ``ats.network`` record); ``event_ids`` the
    events the owners named (the first and the last of the flush), deduplicated, ``None`` left out."""
    found: list[Change] = []
    names = tuple(dict.fromkeys(e for e in event_ids if e is not None))
    for (channel, _, level), was, now in zip(rules.channels, before, after, strict=True):
        if was == now:
            continue
        kinds: list[tuple[str, int]] = []
        if (was > 0) != (now > 0):
            kinds.append((NETWORK_BACK_IN_STOCK if now else NETWORK_OUT_OF_STOCK, 1))
        if level and (was < level) != (now < level):
            kinds.append((NETWORK_LOW_STOCK if now < level else NETWORK_LOW_STOCK_RECOVERED, level))
        found.extend(Change(change_id(sku, "", channel, kind, cause), sku, None, channel, kind, now, was, threshold,
                            as_of_ms, now_ms, names) for kind, threshold in kinds)
    return found


# ---- wire ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65_536)
def sku_partition(sku: str, partitions: int) -> int:
    """The partition that keeps a SKU's network sums: Kafka's default partitioner on the SKU."""
    return owner_partition(sku, partitions)


def network_records(entries: Iterable[Entry], partitions: int, sender: int,
                    limit: int = RECORD_ENTRIES) -> list[tuple[int, str]]:
    """``(destination partition, record JSON)``: the entries packed per SKU partition, ``limit`` a record at
    most, in the order given (a SKU's entries keep their order: they go to one partition)."""
    by_partition: dict[int, list[Entry]] = {}
    for entry in entries:
        by_partition.setdefault(sku_partition(entry.sku, partitions), []).append(entry)
    return [(partition, record_json({"v": RECORD_VERSION, "from": sender, "e": [list(e) for e in chunk[i:i + limit]]}))
            for partition, chunk in sorted(by_partition.items()) for i in range(0, len(chunk), limit)]


def entries_from_wire(record: Any) -> list[Entry]:
    """A decoded ``ats.network`` record → its entries; ``ValueError`` saying what is wrong with anything else
    (only workers write there, but a record that cannot be read must become a dead letter, never crash
    the agent that would read it again at every replay)."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if record.get("v") != RECORD_VERSION:
        raise ValueError(f"format version must be {RECORD_VERSION}, not {record.get('v')!r}")
    rows = record.get("e")
    if not isinstance(rows, list):
        raise ValueError("'e' must be a list of entries")
    entries = []
    for number, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str) and isinstance(row[1], str)
                and _count(row[2]) and _integer(row[3]) and (row[4] is None or isinstance(row[4], str))):
            raise ValueError(f"entry {number} must be [sku, location_id, ats >= 0, as_of_ms, cause or null]: "
                             f"{str(row)[:200]}")
        entries.append(Entry(*row))
    return entries


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return _integer(value) and value >= 0
