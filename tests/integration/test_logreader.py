"""Reading the log directly (streams.logreader) on the real broker: true ends and where records are.

The embedded broker lists the end of a partition whose last record batch holds many records as the
first offset of that batch + 1 (../shared/EMBEDDED.md). These tests pin the quirk where it exists and
show the reader's answer is the true end on any broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from availability.settings import Settings, load_settings
from streams.logreader import LogReader
from tests import brokers
from tests.builders import ref

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(broker_url: str) -> Settings:
    return load_settings({"ATS_BROKER_URL": broker_url})


@pytest.fixture
async def reader(settings: Settings) -> AsyncIterator[LogReader]:
    reader = LogReader(settings, timeout_seconds=1.0)
    yield reader
    await reader.close()


async def topic_with(settings: Settings, *batches: int) -> TopicPartition:
    """A one-partition topic holding record batches of these sizes."""
    name = ref("log")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=200, acks="all")
    await producer.start()
    try:
        for size in batches:
            batch = producer.create_batch()
            for i in range(size):
                batch.append(key=None, value=f"{i}".encode(), timestamp=None)
            await (await producer.send_batch(batch, name, partition=0))
    finally:
        await producer.stop()
    return TopicPartition(name, 0)


async def listed_end(settings: Settings, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def test_true_end_after_a_multi_record_batch(settings: Settings, reader: LogReader) -> None:
    tp = await topic_with(settings, 3, 250)
    listed = await listed_end(settings, tp)
    # the embedded broker lists the first offset of the last batch + 1; Kafka is not affected
    assert listed == (253 if brokers.kind() == "kafka" else 4)
    assert await reader.ends({tp: listed}) == {tp: 253}


async def test_true_end_of_an_empty_partition_and_of_a_single_record_batch(settings: Settings,
                                                                          reader: LogReader) -> None:
    empty, single = await topic_with(settings), await topic_with(settings, 5, 1)
    assert await reader.ends({empty: await listed_end(settings, empty)}) == {empty: 0}
    assert await reader.ends({single: await listed_end(settings, single)}) == {single: 6}


async def test_read_gives_the_records_of_a_range_and_none_when_the_log_stops_short(settings: Settings,
                                                                                   reader: LogReader) -> None:
    tp = await topic_with(settings, 10)
    records = await reader.read(tp, 3, 7)
    assert records is not None
    assert [(r.offset, r.value) for r in records] == [(3, b"3"), (4, b"4"), (5, b"5"), (6, b"6")]
    assert await reader.read(tp, 9, 10) is not None
    assert await reader.read(tp, 8, 12) is None  # offsets 10 and 11 are not in the log (yet)


async def test_listed_ends_answer_without_reading(settings: Settings, reader: LogReader) -> None:
    # What a worker that stopped fetching still learns of its inputs (Engine._list_ends): single-record
    # batches end where they end on every broker; after a multi-record batch the embedded broker's
    # listing stops short, which the engine's lag covers with the fetched high watermark.
    singles, multi = await topic_with(settings, 1, 1, 1), await topic_with(settings, 3, 250)
    assert await reader.listed_ends([singles, multi]) == {
        singles: 3, multi: 253 if brokers.kind() == "kafka" else 4}
    assert await reader.listed_ends([]) == {}
