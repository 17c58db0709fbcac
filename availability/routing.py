"""Who owns what: the partition of a location, the legs of an event, and the line operations of a leg.

A location is owned by the partition Kafka's default partitioner gives its id (murmur2 of the UTF-8
bytes), so producers that key by ``location_id`` land on the owner and their events are applied in
place. Anything else (a wrong key, the destination leg of a transfer) is re-routed to the owner.
"""

from __future__ import annotations

from typing import NamedTuple

from .events import AnyEvent, Transfer

ALL = "all"
ORIGIN = "from"
DESTINATION = "to"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def owner_partition(location_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key ``location_id``."""
    return (murmur2(location_id.encode()) & 0x7FFFFFFF) % partitions


def producer_key(event: AnyEvent) -> str:
    """The key producers give an event: its location (a transfer's origin), so the owner applies it in place."""
    return event.from_location_id if isinstance(event, Transfer) else event.location_id


def location_on(partition: int, partitions: int, prefix: str) -> str:
    """The first ``{prefix}-{n}`` that :func:`owner_partition` puts on ``partition``: a location whose events
    are applied in place there (the sentinels of the benchmarks and the simulator)."""
    for index in range(100_000):
        location = f"{prefix}-{index}"
        if owner_partition(location, partitions) == partition:
            return location
    raise ValueError(f"no {prefix}-n location on partition {partition} of {partitions}")


class Leg(NamedTuple):
    """The part of an event that one location applies."""

    location_id: str
    leg: str

    def dedupe_key(self, event_id: str) -> str:
        return event_id if self.leg == ALL else f"{event_id}#{self.leg}"


def legs(event: AnyEvent) -> tuple[Leg, ...]:
    """A transfer is two legs (shipped) or one (received at the destination); anything else is one."""
    if isinstance(event, Transfer):
        if event.status == "shipped":
            return Leg(event.from_location_id, ORIGIN), Leg(event.to_location_id, DESTINATION)
        return (Leg(event.to_location_id, DESTINATION),)
    return (Leg(event.location_id, ALL),)


def line_ops(event: AnyEvent, leg: str) -> list[tuple[str, str, int]]:
    """``(sku, operation, qty)`` for each line of ``event`` as seen by ``leg``; operations are the keys of
    :data:`availability.ledger.HANDLERS`. Reservations are not line operations (see the shard)."""
    match event.type:
        case "sale":
            return [(line.sku, "sale", line.qty) for line in event.lines]
        case "return":
            return [(line.sku, "return" if line.disposition == "sellable" else "return_damaged", line.qty)
                    for line in event.lines]
        case "receipt":
            return [(line.sku, "receipt", line.qty) for line in event.lines]
        case "transfer":
            if leg == ORIGIN:
                return [(line.sku, "transfer_out", line.qty) for line in event.lines]
            operation = "transfer_ship_in" if event.status == "shipped" else "transfer_in"
            return [(line.sku, operation, line.qty) for line in event.lines]
        case "adjustment":
            operation = "count" if event.mode == "count" else "adjustment"
            return [(line.sku, operation, line.qty) for line in event.lines]
        case "policy":
            return [(line.sku, "policy", line.safety_stock) for line in event.lines]
    return []
