"""The Faust App object, configured from the frozen settings. Nothing else lives here."""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from availability import topics
from availability.settings import Settings


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust pins the consumer's fetch wait at 1.5 s. A broker that holds a fetch until its wait runs
    out even when new records arrive (the embedded one does) then delays every event by up to that:
    measured ~0.74 s per reservation decision. ``ATS_FETCH_WAIT_MS`` bounds it."""

    fetch_wait_ms = 1_500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_wait_ms  # read by AIOKafkaConsumer.start()
        return consumer


def _consumer_class(fetch_wait_ms: int) -> type[faust_aiokafka.Consumer]:
    thread: type[_ConsumerThread] = type("ConsumerThread", (_ConsumerThread,), {"fetch_wait_ms": fetch_wait_ms})

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return thread(self, loop=self.loop, beacon=self.beacon)

    return Consumer


def create_faust_app(settings: Settings, *, store: str | None = None) -> faust.App:
    """A Faust app tuned for batches and fast restarts.

    ``APP_ID`` and the table names are pinned in :mod:`availability.topics`: Faust derives changelog
    topic names from them, and renaming one orphans stored state.
    """
    store = store or ("rocksdb://" if settings.store == "rocksdb" else "memory://")
    app = faust.App(
        topics.APP_ID,
        broker=[f"kafka://{host}" for host in settings.bootstrap_servers],
        store=store,
        datadir=str(settings.data_dir / "worker"),
        autodiscover=False,
        key_serializer="raw",  # the engine decodes and validates itself: a poison message is a dead letter,
        value_serializer="raw",  # never a decode error that crashes the agent

        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,  # `streams.admin.ensure_topics` creates every topic, co-partitioned
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_rebalance_timeout=max(settings.session_timeout_seconds * 2, 6.0),
        broker_commit_interval=0.5,
        producer_acks=-1,
        producer_linger_ms=1,
        # A flush sends thousands of state records of up to kilobytes at once, and aiokafka keeps one
        # request in flight per broker: Faust's 16 KB batches held a few records each. A batch may now
        # carry much of a partition's flush (the broker's default limit for a batch is 1 MB).
        producer_max_batch_size=1_000_000,
        producer_max_request_size=8_000_000,
        stream_buffer_maxsize=max(settings.batch_max * 2, 4096),
        stream_wait_empty=False,
        table_standby_replicas=0,
        table_cleanup_interval=3600.0,
        logging_config=None,
    )
    app.transport.Consumer = _consumer_class(settings.fetch_wait_ms)  # type: ignore[misc]  # this app's only
    return app
