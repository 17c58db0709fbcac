"""The Faust App object, configured from the frozen settings. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import faust
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.auth import CredentialsT
from mode import ServiceT

from availability import topics
from availability.connections import kafka_ssl_context
from availability.settings import Settings

from .intake import Intake

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with two adjustments for the broker it may meet:

    * Faust pins the consumer's fetch wait at 1.5 s. A broker that holds a fetch until its wait runs
      out even when new records arrive (the embedded one does) then delays every event by up to that:
      measured ~0.74 s per reservation decision. ``ATS_FETCH_WAIT_MS`` bounds it.
    * **Embedded-broker quirk:** it numbers a group's first generation 0, and aiokafka sends LeaveGroup
      only for generations above 0, so a worker stopped in its first generation never leaves and the
      next join waits a whole session timeout (``../shared/EMBEDDED.md``). On stop, a member of
      generation 0 leaves itself. Apache Kafka starts at generation 1: there this never fires.
    """

    fetch_wait_ms = 1_500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_wait_ms  # read by AIOKafkaConsumer.start()
        return consumer

    async def on_thread_stop(self) -> None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator):
            await leave_first_generation(coordinator)
        await super().on_thread_stop()


async def leave_first_generation(coordinator: GroupCoordinator) -> bool:
    """Send LeaveGroup for a member of generation 0, which aiokafka's own leave skips; True if sent."""
    if coordinator.generation != 0 or coordinator.member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID:
        return False
    try:
        await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
    except KafkaError as exc:
        log.warning("leaving group %s from its first generation failed: %s", coordinator.group_id, exc)
        return False
    log.info("left group %s from its first generation (the embedded broker numbers it 0)", coordinator.group_id)
    # Forget the membership as aiokafka's own leave does, but without its reset_generation(), which also
    # asks for a rejoin: the coordinator began joining the group again while the worker stopped, and
    # when that join completed before the broker stopped too (ats up), the stop took 3.5 s and logged
    # errors. Its heartbeats stop with the member id; aiokafka's close resets the rest.
    coordinator.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID
    coordinator.member_id = JoinGroupRequest.UNKNOWN_MEMBER_ID
    return True


async def _next_records(consumer: Any, intake: Intake) -> tuple[Any, set[TP] | None]:
    """What the next fetch brought, and the partitions it asked for (``fetched, active``, as Faust's
    ``Consumer._wait_next_records``). While the intake is full (about ``max_records`` waiting for the
    engine), only its ``first`` topics' partitions: the others' records stay where they are (aiokafka
    fetches a partition again only once the last fetch of it was taken), and those of the first topics
    (reservations) still arrive. The fetch loop waited for room instead, and at peak, with the worker
    tens of thousands of records behind, a fetch overfilled the intake for seconds: holds reached the
    engine 2-10 s after they were produced, and timed out (``ats simulate --profile black-friday``)."""
    if not intake.full():
        fetched, active = await consumer._wait_next_records(1.0)
        return fetched, active
    first = {tp for tp in consumer._get_active_partitions() if tp.topic in intake.first}
    if not first or not consumer.flow_active:
        await consumer.sleep(FULL_POLL_SECONDS)
        return None, None
    return await consumer._getmany(active_partitions=first, timeout=FULL_POLL_SECONDS), first


def _consumer_class(fetch_wait_ms: int, intake: Intake) -> type[faust_aiokafka.Consumer]:
    thread: type[_ConsumerThread] = type("ConsumerThread", (_ConsumerThread,), {"fetch_wait_ms": fetch_wait_ms})

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return thread(self, loop=self.loop, beacon=self.beacon)

        async def _drain_messages(self, fetcher: ServiceT) -> None:
            await drain_messages(self, fetcher, intake)

        # Commits: the offsets the flushed state covers, for the intake's partitions (no message of
        # theirs is acknowledged: none goes Faust's way); Faust's own bookkeeping for any other.
        def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
            yield from super()._filter_tps_with_pending_acks(topics)
            yield from (tp for tp in intake.covered if topics is None or tp in topics or tp.topic in topics)

        def _new_offset(self, tp: TP) -> int | None:
            covered = intake.covered.get(tp)
            return covered if covered is not None else super()._new_offset(tp)

    Consumer.intake = intake  # type: ignore[attr-defined]
    return Consumer


def intake_of(app: faust.App) -> Intake:
    """The app's :class:`~streams.intake.Intake` (where its consumer hands over the engine's records)."""
    intake: Intake = app.transport.Consumer.intake  # type: ignore[attr-defined]
    return intake


#: while the intake is full, the fetch loop fetches its ``first`` topics' partitions alone, and asks this
#: often whether there is room for the others again (a fetch in flight cannot be called off: Faust's
#: consumer runs in its own thread, and what it fetched would be lost)
FULL_POLL_SECONDS = 0.05


async def drain_messages(consumer: Any, fetcher: ServiceT, intake: Intake) -> None:
    """Faust's fetch loop (``faust.transport.consumer.Consumer._drain_messages`` and ``getmany``,
    faust-streaming 0.15.3), with two changes:

    * the records of the intake's topics are :meth:`put <streams.intake.Intake.put>` there as fetched, a
      list per partition (the records already read dropped, the read offset moved past the last); none
      becomes a Faust message or event (:mod:`streams.intake`). While the intake is full, only the
      partitions of its ``first`` topics are fetched (:func:`_next_records`);
    * any other record (the changelog's, while Faust restores the table) that can be delivered at once is
      handed to the conductor directly. Faust hands every record over as
      ``wait_first(callback(message), suspend_flow.wait())``: two tasks and an ``asyncio.wait`` per
      record, so that a rebalance (which sets ``suspend_flow``) can abandon a delivery that waits for room
      in a full queue (``FlowControlQueue.clear`` empties a queue without waking whoever waits to put into
      it). PEERS.md measured that call at 21% of a stock worker's samples. A delivery cannot wait while
      the flow is active and no queue the record goes to is full: the conductor's callback then returns
      without suspending, so nothing (no rebalance) runs between the check and the delivery, and the
      direct call is the same delivery without the tasks. Any other record goes Faust's way.
    """
    callback = consumer.callback
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set  # type: ignore[attr-defined]
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__
    set_flag, unset_flag = consumer.diag.set_flag, consumer.diag.unset_flag
    commit_every = consumer._commit_every
    app = consumer.app
    acks_enabled_for = app.topics.acks_enabled_for
    channels_of = app.topics._tp_index.get  # TP → the channels its records go to (the conductor's)
    inbound = app.monitor.stream_inbound_time  # Faust's check of a stalled stream reads it
    track_end = app.monitor.track_tp_end_offset
    intake_topics = intake.topics

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            fetched, active = await _next_records(consumer, intake)
            await consumer.sleep(0)  # a fetch may return at once, loop after loop
            if fetched is None or consumer.should_stop:
                continue
            if not consumer.flow_active:
                await _seek_to_committed(consumer)  # as Faust's getmany does
                continue
            generation = app.consumer_generation_id
            buffered = consumer._buffered_partitions
            since_yield = 0
            for tp, records in fetched.items():
                if not consumer.flow_active or app.consumer_generation_id != generation:
                    break  # a rebalance began: what is left is its new owner's to read
                if not records or (active is not None and tp not in active and tp not in buffered):
                    continue
                tp = TP(tp.topic, tp.partition)  # aiokafka's TopicPartition, as Faust names it
                track_end(tp, consumer.highwater(tp))
                if tp.topic in intake_topics:
                    read = get_read_offset(tp)
                    if read is not None and records[0].offset < read:
                        records = [record for record in records if record.offset >= read]
                        if not records:
                            continue
                    intake.put(tp, records)
                    set_read_offset(tp, records[-1].offset)
                    inbound[tp] = time.monotonic()
                    continue
                for record in records:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = record.offset
                    read = get_read_offset(tp)
                    if read is not None and offset < read:
                        continue  # read already (Faust logs it at its "dev" level, below DEBUG)
                    if read and offset - read > 1 and acks_enabled_for(tp.topic):
                        await consumer._add_gap(tp, read + 1, offset)
                    if commit_every is not None and consumer._n_acked >= commit_every:
                        consumer._n_acked = 0
                        await consumer.commit()
                    message = consumer._to_message(tp, record)
                    if consumer.flow_active and not any(channel.queue.full() for channel in channels_of(tp, ())):
                        await callback(message)
                    else:
                        await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                    set_read_offset(tp, offset)
            unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def _seek_to_committed(consumer: Any) -> None:
    try:
        await consumer.perform_seek()
    except Exception as exc:  # as Faust's getmany: a seek that fails now is tried again next fetch
        log.warning("exception performing seek when flow not active %s", exc)


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's form of the Kafka security settings (its driver turns them into aiokafka's options,
    for the consumer, the producer and the table recovery consumer alike)."""
    context = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_password,
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_faust_app(settings: Settings, *, store: str | None = None) -> faust.App:
    """A Faust app tuned for batches and fast restarts.

    ``APP_ID`` and the table names are pinned in :mod:`availability.topics`: Faust derives changelog
    topic names from them, and renaming one orphans stored state.
    """
    store = store or ("rocksdb://" if settings.store == "rocksdb" else "memory://")
    buffered = max(settings.batch_max * 2, 4096)  # records fetched ahead of the agent, at most about
    app = faust.App(
        topics.APP_ID,
        broker=[f"kafka://{host}" for host in settings.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
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
        # the changelog's records queue up to this while Faust restores the table (the inputs' records
        # wait in the engine's intake: streams.intake)
        stream_buffer_maxsize=buffered,
        stream_wait_empty=False,
        table_standby_replicas=0,
        table_cleanup_interval=3600.0,
        logging_config=None,
    )
    intake = Intake(topics.CONSUMED_TOPICS, max_records=buffered, first=[topics.RESERVATIONS])
    app.transport.Consumer = _consumer_class(settings.fetch_wait_ms, intake)  # type: ignore[misc]  # this app's only
    return app
