"""Sending many records at once: one record batch per topic partition, one delivery to wait for each.

The worker writes its outputs in bursts (a flush's changelog records, the ERP postings it closed, the
re-routed legs and dead letters of a batch). Through Faust's ``Topic.send`` each record took a pass
through a channel and Faust's producer buffer; through aiokafka's ``send`` still a partitioner call
(murmur2 in Python), a future and an accumulator append: at a peak day's ~7k postings/s that was a
quarter of the worker (py-spy, ``--gil``). Here records are appended to aiokafka ``BatchBuilder``s, one
(or more, when one fills) per topic partition, sent with ``send_batch``, and their deliveries awaited
together: what a caller does next (confirm postings, record the changelog offset) happens only once
every record is in the log, or not at all (an error raises).

The partition of a record sent by key is the one Kafka's default partitioner gives it (murmur2 of the
key, as the producer computes it), computed once per key and call, and remembered across calls for keys
that repeat (locations). A partition load re-sends its whole outboxes: 125k change records keyed by
1,000 SKUs were 125k murmur2 runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

#: ``(topic, key, value, partition)``; partition None: by key
Record = tuple[str, bytes, bytes | None, int | None]

#: keys whose partition is remembered, per topic (locations: a few thousand)
_REMEMBERED_KEYS = 65_536


class BatchSender:
    def __init__(self, producer: Any) -> None:
        """``producer``: a started Faust producer (its aiokafka producer is used directly)."""
        self._faust_producer = producer
        self._partitions: dict[tuple[str, bytes], int] = {}

    @property
    def _producer(self) -> AIOKafkaProducer:
        producer: AIOKafkaProducer = self._faust_producer._ensure_producer()
        return producer

    async def send(self, records: Iterable[Record], *, remember_keys: bool | Container[str] = True,
                   ) -> dict[tuple[str, int], int]:
        """Send every record and wait for their delivery; the last offset written per (topic, partition).
        ``remember_keys``: the keys repeat (remember their partitions); False for unique keys; or the topics
        whose keys repeat."""
        producer = self._producer
        builders: dict[tuple[str, int], list[Any]] = {}
        keyed: dict[tuple[str, bytes], int] = {}  # this call's keys
        for topic, key, value, partition in records:
            if partition is None:
                partition = keyed.get((topic, key))
                if partition is None:
                    remember = remember_keys if isinstance(remember_keys, bool) else topic in remember_keys
                    partition = keyed[(topic, key)] = await self._partition_of(producer, topic, key, remember)
            batches = builders.get((topic, partition))
            if batches is None:
                batches = builders[(topic, partition)] = [producer.create_batch()]
            if batches[-1].append(key=key, value=value, timestamp=None) is None:  # full: start another
                batches.append(producer.create_batch())
                if batches[-1].append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes does not fit in a batch of {topic}")
        sent = []
        for (topic, partition), batches in builders.items():
            for batch in batches:
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append(((topic, partition), batch.record_count(), future))
        last: dict[tuple[str, int], int] = {}
        delivered = await asyncio.gather(*(future for _, _, future in sent))
        for (where, count, _), metadata in zip(sent, delivered, strict=True):
            last[where] = max(last.get(where, -1), metadata.offset + count - 1)
        return last

    async def _partition_of(self, producer: AIOKafkaProducer, topic: str, key: bytes, remember: bool) -> int:
        known = self._partitions.get((topic, key))
        if known is not None:
            return known
        await producer.client._wait_on_metadata(topic)
        partition: int = producer._partition(topic, None, key, None, key, None)
        if remember:
            if len(self._partitions) >= _REMEMBERED_KEYS:
                self._partitions.clear()
            self._partitions[(topic, key)] = partition
        return partition
