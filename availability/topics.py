"""Every topic name and cache key, declared once. Persistent names are contract: never rename."""

from __future__ import annotations

import re
from typing import Final

from .events import CONTROL_CHARACTERS, ID_CHARS

SALES: Final = "inventory.sales"
RETURNS: Final = "inventory.returns"
TRANSFERS: Final = "inventory.transfers"
RECEIPTS: Final = "inventory.receipts"
RESERVATIONS: Final = "inventory.reservations"
ADJUSTMENTS: Final = "inventory.adjustments"
POLICIES: Final = "inventory.policies"

#: input topic → the event ``type`` it carries
INPUT_TOPICS: Final[dict[str, str]] = {
    SALES: "sale",
    RETURNS: "return",
    TRANSFERS: "transfer",
    RECEIPTS: "receipt",
    RESERVATIONS: "reservation",
    ADJUSTMENTS: "adjustment",
    POLICIES: "policy",
}
TOPIC_FOR_TYPE: Final[dict[str, str]] = {kind: topic for topic, kind in INPUT_TOPICS.items()}

#: Internal, co-partitioned with the inputs: legs re-routed to the partition that owns their
#: location (wrong producer keys, the second leg of a transfer) and per-partition clock ticks.
ROUTED: Final = "ats.routed"
#: Internal, co-partitioned with the inputs, keyed by SKU: the positions whose share of a watched channel
#: changed, packed per partition of their SKU, which sums them per channel (:mod:`availability.network`)
NETWORK: Final = "ats.network"

DEAD_LETTER: Final = "inventory.dead-letter"
ERP_MOVEMENTS: Final = "erp.movements"
#: the change feed (:mod:`availability.feed`): a record per crossing of a threshold, keyed by SKU
AVAILABILITY: Final = "inventory.availability"

#: Topics the worker consumes, in a fixed order: the index is the topic's code in watermarks (append only).
CONSUMED_TOPICS: Final[tuple[str, ...]] = (*INPUT_TOPICS, ROUTED, NETWORK)
TOPIC_CODE: Final[dict[str, int]] = {topic: code for code, topic in enumerate(CONSUMED_TOPICS)}
OUTPUT_TOPICS: Final[tuple[str, ...]] = (DEAD_LETTER, ERP_MOVEMENTS, AVAILABILITY)

#: Faust app id and table name: the changelog topic is ``{APP_ID}-{STATE_TABLE}-changelog``.
APP_ID: Final = "ats"
STATE_TABLE: Final = "state-v1"
CHANGELOG_TOPIC: Final = f"{APP_ID}-{STATE_TABLE}-changelog"

# Cache keys (Redis). One hash per SKU, field = location id: one round trip per SKU, pipelined bulk.
CACHE_PREFIX: Final = "ats:v1:"
DECISIONS_CHANNEL: Final = CACHE_PREFIX + "decisions"
HEARTBEAT_PREFIX: Final = CACHE_PREFIX + "worker:"
#: published by a worker in the same pipeline as, after, the position hashes it wrote: the SKUs changed
#: (:func:`availability.wire.changed_skus`), so an API keeping answers in memory drops those SKUs' answers
CHANGED_CHANNEL: Final = CACHE_PREFIX + "changed"
#: each worker's running totals for the console (``GET /v1/ops/summary``), beside its heartbeat
WORKER_STATS_PREFIX: Final = CACHE_PREFIX + "worker-stats:"
#: the ERP's last posted book snapshot (PUT /v1/erp/book), read by GET /v1/erp/drift
ERP_BOOK_KEY: Final = CACHE_PREFIX + "erp:book"
#: one hash, field = partition number: set by the partition's owner in the same pipeline as a whole
#: snapshot of its positions. A missing field says the cache lost that partition's positions (flushed,
#: restarted, evicted): the owner re-writes them, and the API answers 503 until it has.
CACHE_EPOCHS_KEY: Final = CACHE_PREFIX + "cache-epochs"
#: one hash, field = location id, value ``[business_ms, arrival_ms]`` (:mod:`availability.silence`): when
#: each location last spoke. Written by the location's owner in the pipeline of its positions; read by
#: ``GET /v1/locations/{id}/status`` and by a worker that loads the partition (so a restart keeps them)
LOCATIONS_KEY: Final = CACHE_PREFIX + "locations"


_KEY_ID = re.compile(ID_CHARS)


class UnsafeKeyPart(ValueError):
    """A key was asked for with a string validation should have refused: a bug, never user input's fault."""


def _id_part(value: str) -> str:
    """A SKU as validated (``[A-Za-z0-9._:-]``, 1-64): no glob (``*?[``), hash tag (``{}``), space or
    control character can reach a key. ``:`` may, but every key family has its own prefix ending in
    ``:``, so ``pos:`` + a SKU can only ever be a position key."""
    if len(value) > 64 or not _KEY_ID.fullmatch(value):
        raise UnsafeKeyPart(f"not a validated SKU or location id: {value[:80]!r}")
    return value


def _reference_part(value: str) -> str:
    """A reservation id as validated: 1-128 characters, none of them a control character."""
    if not 1 <= len(value) <= 128 or CONTROL_CHARACTERS.search(value):
        raise UnsafeKeyPart(f"not a validated reference id: {value[:80]!r}")
    return value


def position_key(sku: str) -> str:
    return f"{CACHE_PREFIX}pos:{_id_part(sku)}"


def reservation_key(reservation_id: str) -> str:
    return f"{CACHE_PREFIX}resv:{_reference_part(reservation_id)}"


def reservation_claim_key(reservation_id: str) -> str:
    """Which location a reservation id belongs to, claimed by the API before its first hold is produced.

    Holds are remembered by the partition that owns their location; only this claim stops one id
    from being held at two locations at once."""
    return f"{CACHE_PREFIX}resv-claim:{_reference_part(reservation_id)}"


def heartbeat_key(worker_id: str) -> str:
    return HEARTBEAT_PREFIX + worker_id


def worker_stats_key(worker_id: str) -> str:
    return WORKER_STATS_PREFIX + worker_id


def history_key(partition: int, sku: str, location_id: str) -> str:
    """A list per position: its history entries (:mod:`availability.history`), newest first. ``{p3}``,
    the partition that owns the location, is a hash tag: the keys a worker writes together share a
    Redis Cluster slot, so one script call writes them all. ``|`` is in neither a SKU nor a location id,
    so the pair is unambiguous."""
    return f"{CACHE_PREFIX}hist:{{p{partition}}}:{_id_part(sku)}|{_id_part(location_id)}"


def location_index_key(location_id: str) -> str:
    """A sorted set per location: member SKU, score its net availability (on_hand - reserved - safety_stock,
    not floored at 0), so the lowest-ATS SKUs of a location are one ``ZRANGE`` (most oversold first)."""
    return f"{CACHE_PREFIX}loc:{location_id}"
