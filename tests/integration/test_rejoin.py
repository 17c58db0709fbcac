"""A stopped worker leaves its group, so the next one joins at once instead of after a session timeout.

Embedded-broker quirk (``../shared/EMBEDDED.md``): it numbers a group's first generation 0 and aiokafka
leaves only from generations above 0. ``streams.app.leave_first_generation`` closes that gap; on Apache
Kafka the first generation is 1, aiokafka leaves by itself and the workaround never fires.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.admin import ensure_topics
from streams.app import leave_first_generation
from tests import brokers

from .cluster import Cluster, eventually
from .conftest import ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOPIC = "rejoin.probe"


async def _member(bootstrap: str, session_seconds: float) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="rejoin",
                                session_timeout_ms=int(session_seconds * 1000), heartbeat_interval_ms=500,
                                rebalance_timeout_ms=int(session_seconds * 2000))
    await consumer.start()
    await eventually(lambda: _assigned(consumer), timeout=60, what="an assignment")
    return consumer


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=100)
    return bool(consumer.assignment())


async def test_a_member_of_the_first_generation_leaves_and_the_next_joins_without_waiting(own_broker: str) -> None:
    bootstrap = own_broker.removeprefix("kafka://")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    first = await _member(bootstrap, session_seconds=20)
    left = await leave_first_generation(first._coordinator)
    await first.stop()
    assert left == (brokers.kind() == "embedded")  # Kafka: generation 1, aiokafka's own leave does it

    started = time.monotonic()
    second = await _member(bootstrap, session_seconds=6)
    joined_in = time.monotonic() - started
    await second.stop()
    # Measured on the embedded broker: 10 s after a leave (it holds a join for half the group's session),
    # 36 s when the first member had not left (its whole session, then the hold).
    assert joined_in < 25, f"the next member joined after {joined_in:.1f} s"


async def test_a_worker_stopped_in_its_first_generation_leaves_its_group(own_broker: str, redis_url: str,
                                                                        tmp_path: Path) -> None:
    cluster = Cluster(own_broker, redis_url, tmp_path, partitions=2)
    await ensure_topics(cluster.settings)
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        cluster.stop("w0")
        log = cluster.log("w0")
        assert ("from its first generation" in log) == (brokers.kind() == "embedded")
        assert "(Re-)joining group" not in log.partition("from its first generation")[2], "a stop never joins again"
    finally:
        await cluster.close()
