"""The session's broker and cache are real servers that answer."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from availability import topics
from availability.settings import load_settings
from streams.admin import TopicLayoutError, ensure_topics
from tests.builders import ref


async def test_cache_round_trip(redis_url: str) -> None:
    cache = Redis.from_url(redis_url)
    key = ref("probe")
    await cache.set(key, b"1", ex=10)
    assert await cache.get(key) == b"1"
    await cache.aclose()


async def test_broker_round_trip(broker_url: str) -> None:
    settings = load_settings({"ATS_BROKER_URL": broker_url})
    topic = ref("probe")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:  # created first: Kafka here (as in most production clusters) does not create topics on first use
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(topic, b"hello", key=b"k")
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=ref("g"))
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        values = [record.value for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    assert values == [b"hello"]


async def test_topics_are_created_co_partitioned(broker_url: str) -> None:
    settings = load_settings({"ATS_BROKER_URL": broker_url, "ATS_PARTITIONS": "8"})
    await ensure_topics(settings)
    assert await ensure_topics(settings) == []
    with pytest.raises(TopicLayoutError, match="ATS_PARTITIONS=3"):
        await ensure_topics(load_settings({"ATS_BROKER_URL": broker_url, "ATS_PARTITIONS": "3"}))
    assert topics.CHANGELOG_TOPIC.startswith(topics.APP_ID)
