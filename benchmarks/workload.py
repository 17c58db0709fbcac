"""The ingest workload on a broker: POS sale/receipt messages (the generator of :mod:`benchmarks.domain`)
keyed by ``location_id`` to their type's topic, the arithmetic the engine must end with, and one sentinel
per input partition produced last, whose arrival in the cache says that partition is fully applied.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from availability import topics
from availability.routing import location_on

from .domain import envelopes

#: the input topics of the workload (80 % sales, 20 % receipts)
TOPICS = (topics.SALES, topics.RECEIPTS)
SIGN = {"sale": -1, "receipt": 1}
SENTINEL_SKU = "BENCH-SENTINEL"


@dataclass
class Workload:
    messages: list[tuple[str, bytes, bytes]]  # (topic, key, value)
    lines: int
    on_hand: dict[str, int]  # the expected Σ on_hand over locations, per SKU
    sentinels: list[tuple[str, int, str, str]] = field(default_factory=list)  # (topic, partition, sku, location)

    @property
    def payload_bytes(self) -> int:
        return sum(len(value) for _, _, value in self.messages)

    def sample(self, size: int = 40, seed: int = 11) -> dict[str, int]:
        """Expected Σ on_hand of the most popular SKUs and a random draw of the others."""
        ranked = sorted(self.on_hand, key=lambda sku: int(sku.rsplit("-", 1)[1]))
        chosen = ranked[: size // 2] + random.Random(seed).sample(ranked[size // 2:], min(size // 2,
                                                                                         len(ranked) - size // 2))
        return {sku: self.on_hand[sku] for sku in chosen}


def build(lines: int, per_message: int, partitions: int) -> Workload:
    """``lines`` lines in messages of ``per_message`` lines, and the sentinels for ``partitions``."""
    count = max(1, lines // per_message)
    messages = []
    on_hand: dict[str, int] = defaultdict(int)
    total = 0
    for raw in envelopes(count, per_message):
        body = orjson.loads(raw)
        sign = SIGN[body["type"]]
        for line in body["lines"]:
            on_hand[line["sku"]] += sign * line["qty"]
        total += len(body["lines"])
        messages.append((topics.TOPIC_FOR_TYPE[body["type"]], body["location_id"].encode(), raw))
    workload = Workload(messages, total, dict(on_hand))
    for topic in TOPICS:
        for partition in range(partitions):
            location = location_on(partition, partitions, f"BENCH-{topic}")
            workload.sentinels.append((topic, partition, f"{SENTINEL_SKU}-{topic}-{partition}", location))
    return workload


def sentinel_event(topic: str, sku: str, location: str) -> bytes:
    kind = topics.INPUT_TOPICS[topic]
    return orjson.dumps({"event_id": f"sentinel-{sku}", "type": kind, "occurred_at": "2026-11-27T10:00:00Z",
                         "location_id": location, "lines": [{"sku": sku, "qty": 1}]})


async def produce(bootstrap: list[str], workload: Workload) -> None:
    """Every message (keyed by location: the default partitioner puts it on its owner), then the sentinels."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for topic, key, value in workload.messages:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
        sent = [await producer.send(topic, sentinel_event(topic, sku, location), key=location.encode(),
                                    partition=partition)
                for topic, partition, sku, location in workload.sentinels]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
