"""Topic administration: every topic the product uses, created with the configured partition count."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from availability import topics
from availability.connections import kafka_options
from availability.settings import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}


class TopicLayoutError(RuntimeError):
    """An existing topic has a partition count that would break location ownership."""


def required_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name → config. Inputs, the internal routing topic and the changelog are co-partitioned."""
    wanted: dict[str, dict[str, str]] = {name: {} for name in (*topics.CONSUMED_TOPICS, *topics.OUTPUT_TOPICS)}
    wanted[topics.CHANGELOG_TOPIC] = dict(COMPACTED)
    return wanted


async def ensure_topics(settings: Settings, *, attempts: int = 30) -> list[str]:
    """Create missing topics; fail loudly when an existing co-partitioned topic has another count.

    Returns the names created. Retries while the broker is still starting.
    """
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000,
                                    **kafka_options(settings))
        try:
            await admin.start()
            return await _ensure(admin, settings)
        except (KafkaError, OSError) as exc:
            if attempt == attempts - 1:
                raise
            log.info("broker not ready (%s); retrying", exc)
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise AssertionError("unreachable")


async def _ensure(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    wanted = required_topics(settings)
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if missing:
        new = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=wanted[name] or None)
            for name in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
    present = [name for name in wanted if name in existing]
    if present:
        for description in await admin.describe_topics(present):
            count = len(description.get("partitions") or [])
            name = description.get("topic")
            co_partitioned = name in topics.CONSUMED_TOPICS or name == topics.CHANGELOG_TOPIC
            if co_partitioned and count and count != settings.partitions:
                raise TopicLayoutError(
                    f"topic {name} has {count} partitions but ATS_PARTITIONS={settings.partitions}: "
                    "every input and state topic must have the same count (locations are owned by partition)"
                )
    return missing
