"""Reading the log directly, outside the consumer group: where records are and where a partition ends.

Two answers the worker cannot take from Faust's consumer:

* **the records the consumer skipped** (:meth:`LogReader.read`): when the input gate
  (:mod:`streams.gate`) finds a gap, the engine reads what the log holds in it and applies it;
* **where a partition really ends** (:meth:`LogReader.ends`). The embedded broker answers ListOffsets
  with the first offset of the last record batch + 1 when that batch holds several records
  (``../shared/EMBEDDED.md``). Faust recovers a table by reading its changelog up to that answer, so
  after a crash inside a flush it silently stops short, or, with a RocksDB store kept, refuses to start
  (``ConsistencyError: persisted offset higher than highwater``). A fetch response carries the true high
  watermark on every broker; :func:`use_true_ends` makes Faust's recovery ask for it. On Apache Kafka both
  answers agree and the fetch costs one request per changelog partition at each rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from availability.connections import kafka_options
from availability.settings import Settings

log = logging.getLogger(__name__)


class LogReader:
    def __init__(self, settings: Settings, *, timeout_seconds: float = 5.0) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, enable_auto_commit=False,
                                        isolation_level="read_committed", auto_offset_reset="earliest",
                                        **kafka_options(self.settings))
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def read(self, tp: Any, start: int, end: int) -> list[Any] | None:
        """Every record of ``tp`` at offsets ``start`` ≤ offset < ``end`` (holes in the log are simply
        absent), read until the log shows ``end`` is reached; None if it does not within the timeout."""
        async with self._lock:
            consumer = await self._started()
            partition = TopicPartition(tp.topic, tp.partition)
            consumer.assign([partition])
            consumer.seek(partition, start)
            records: list[Any] = []
            deadline = time.monotonic() + self.timeout_seconds
            while time.monotonic() < deadline:
                fetched = await consumer.getmany(partition, timeout_ms=200, max_records=10_000)
                for record in fetched.get(partition, ()):
                    if record.offset >= end:
                        return records
                    records.append(record)
                if records and records[-1].offset == end - 1:
                    return records
            return None

    async def listed_ends(self, tps: Iterable[Any]) -> dict[Any, int]:
        """The end offsets the broker lists (ListOffsets) for ``tps``: what the consumer has not fetched yet
        included (on the embedded broker they can stop short of a multi-record batch, see :meth:`ends`)."""
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        if not partitions:
            return {}
        async with self._lock:
            consumer = await self._started()
            listed = await consumer.end_offsets(list(partitions))
        return {partitions[partition]: offset for partition, offset in listed.items()}

    async def ends(self, listed: Mapping[Any, int | None]) -> dict[Any, int | None]:
        """The true end offset of each partition, from fetch responses read at its listed end offset."""
        if not listed:
            return {}
        async with self._lock:
            consumer = await self._started()
            partitions = {tp: TopicPartition(tp.topic, tp.partition) for tp in listed}
            consumer.assign(list(partitions.values()))
            for tp, partition in partitions.items():
                consumer.seek(partition, max(0, (listed[tp] or 0) - 1))
            deadline = time.monotonic() + self.timeout_seconds
            while any(consumer.highwater(p) is None for p in partitions.values()) and time.monotonic() < deadline:
                await consumer.getmany(*partitions.values(), timeout_ms=200, max_records=1)
            ends: dict[Any, int | None] = {}
            for tp, partition in partitions.items():
                fetched, known = consumer.highwater(partition), listed[tp]
                ends[tp] = max(fetched, known or 0) if fetched is not None else known
                if fetched is not None and known is not None and fetched > known:
                    log.info("%s ends at %d, not at %d as listed: reading it to the true end", tp, fetched, known)
            return ends


def use_true_ends(consumer: Any, reader: LogReader, topics: Iterable[str]) -> None:
    """Make ``consumer.highwaters`` (what Faust's recovery reads to) answer true ends for ``topics``."""
    if getattr(consumer, "_ats_true_ends", False):
        return
    listed_highwaters: Callable[..., Awaitable[Mapping[Any, int | None]]] = consumer.highwaters
    wanted = set(topics)

    async def highwaters(*tps: Any) -> dict[Any, int | None]:
        listed = dict(await listed_highwaters(*tps))
        listed.update(await reader.ends({tp: listed.get(tp) for tp in tps if tp.topic in wanted}))
        return listed

    consumer.highwaters = highwaters
    consumer._ats_true_ends = True
