"""Reading ``inventory.dead-letter`` directly: no consumer group (assign and seek), one consumer per request.

The reader answers what :func:`availability.deadletters.scan` asks for. Two things the embedded broker
(``../shared/EMBEDDED.md``) gets wrong are read from the log instead:

* **where a partition ends**: ListOffsets answers the first offset of the last batch + 1 when that batch
  holds several records; the high watermark a fetch response carries is the true end (as in
  ``streams/logreader.py``, which the API may not import);
* **where ``since`` starts**: it answers ``offsets_for_times`` with offset 0 whatever the time. An answer is
  checked against the timestamps of the records around it and, when wrong, replaced by a binary search
  over the partition (one single-record fetch per step), which assumes timestamps do not go back within a
  partition (each worker stamps a dead letter when it sends it). On Kafka the first answer holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from availability import topics
from availability.deadletters import DeadLetter, Fetch, Page, Scan, parse_record
from availability.settings import Settings


class DeadLetterLog:
    def __init__(self, consumer: AIOKafkaConsumer, *, timeout_seconds: float = 5.0) -> None:
        self.consumer = consumer
        self.timeout_seconds = timeout_seconds

    async def partitions(self) -> list[int]:
        found = self.consumer.partitions_for_topic(topics.DEAD_LETTER)
        if found is None:
            await self.consumer._client.force_metadata_update()
            found = self.consumer.partitions_for_topic(topics.DEAD_LETTER)
        return sorted(found or ())

    async def bounds(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """partition → (first offset, true end), the end from a fetch's high watermark."""
        tps = [TopicPartition(topics.DEAD_LETTER, p) for p in partitions]
        if not tps:
            return {}
        firsts = await self.consumer.beginning_offsets(tps)
        listed = await self.consumer.end_offsets(tps)
        # a listed end is at least the first offset of the last batch + 1: at the first offset, none is
        holding = [tp for tp in tps if listed[tp] > firsts[tp]]
        self.consumer.assign(holding)
        for tp in holding:
            self.consumer.seek(tp, listed[tp] - 1)
        deadline = time.monotonic() + self.timeout_seconds
        while any(self.consumer.highwater(tp) is None for tp in holding) and time.monotonic() < deadline:
            await self.consumer.getmany(*holding, timeout_ms=200, max_records=1)
        return {tp.partition: (firsts[tp], max(listed[tp], self.consumer.highwater(tp) or 0) if tp in holding
                               else firsts[tp]) for tp in tps}

    async def fetch(self, fetches: list[Fetch]) -> dict[int, list[DeadLetter]]:
        """The records of each range (one range per partition), read until each range's end is reached."""
        tps = {f.partition: TopicPartition(topics.DEAD_LETTER, f.partition) for f in fetches}
        self.consumer.assign(list(tps.values()))
        for f in fetches:
            self.consumer.seek(tps[f.partition], f.start)
        out: dict[int, list[DeadLetter]] = {f.partition: [] for f in fetches}
        pending = {f.partition: f for f in fetches if f.start < f.end}
        deadline = time.monotonic() + self.timeout_seconds
        while pending:
            if time.monotonic() > deadline:
                missing = ", ".join(f"{p}@{f.start}..{f.end}" for p, f in pending.items())
                raise TimeoutError(f"{topics.DEAD_LETTER} did not deliver {missing} in time")
            batch = await self.consumer.getmany(*(tps[p] for p in pending), timeout_ms=200, max_records=2_000)
            for tp, records in batch.items():
                wanted = pending.get(tp.partition)
                if wanted is None:
                    continue
                out[tp.partition].extend(parse_record(r.partition, r.offset, r.timestamp, r.value)
                                         for r in records if wanted.start <= r.offset < wanted.end)
            for p in list(pending):
                if await self.consumer.position(tps[p]) >= pending[p].end:
                    del pending[p]
        return out

    async def run(self, plan: Scan) -> Page:
        """Drive a scan: fetch what it asks for until it returns its page."""
        try:
            wanted = next(plan)
            while True:
                wanted = plan.send(await self.fetch(wanted))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def since(self, bounds: dict[int, tuple[int, int]], since_ms: int) -> dict[int, tuple[int, int]]:
        """``bounds`` raised to the first record at or after ``since_ms`` in each partition."""
        tps = {p: TopicPartition(topics.DEAD_LETTER, p) for p, (low, end) in bounds.items() if low < end}
        answers = await self.consumer.offsets_for_times(dict.fromkeys(tps.values(), since_ms)) if tps else {}
        out = dict(bounds)
        for p, tp in tps.items():
            low, end = bounds[p]
            answer = answers.get(tp)
            guess = min(max(answer.offset, low), end) if answer is not None else end
            if not await self._first_at(p, guess, low, end, since_ms):
                guess = await self._bisect(p, low, end, since_ms)
            out[p] = (guess, end)
        return out

    async def _timestamp(self, partition: int, offset: int) -> int | None:
        records = (await self.fetch([Fetch(partition, offset, offset + 1)]))[partition]
        return records[0].timestamp_ms if records else None

    async def _first_at(self, partition: int, offset: int, low: int, end: int, since_ms: int) -> bool:
        """Is ``offset`` the first record at or after ``since_ms`` (``end``: none is)?"""
        if offset < end and ((at := await self._timestamp(partition, offset)) is None or at < since_ms):
            return False
        return offset == low or ((before := await self._timestamp(partition, offset - 1)) is not None
                                 and before < since_ms)

    async def _bisect(self, partition: int, low: int, end: int, since_ms: int) -> int:
        while low < end:
            middle = (low + end) // 2
            at = await self._timestamp(partition, middle)
            if at is not None and at >= since_ms:
                end = middle
            else:
                low = middle + 1
        return low


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[DeadLetterLog]:
    """A consumer of its own for one request (requests never share seek positions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", request_timeout_ms=10_000,
                                fetch_max_wait_ms=50)  # the embedded broker holds a fetch its whole wait
    try:
        await asyncio.wait_for(consumer.start(), 10.0)
        yield DeadLetterLog(consumer)
    finally:
        await consumer.stop()
