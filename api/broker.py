"""The API's Kafka producer: ingest and reservation commands go through it."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from availability.connections import kafka_options
from availability.settings import Settings
from cacheclient.tasks import stop

log = logging.getLogger(__name__)

#: how often a broker that failed a produce is asked whether it answers again
PROBE_INTERVAL_S = 1.0


class BrokerDown(Exception):
    """The broker failed the last produce and has not answered since: refused without waiting."""


#: what a produce raises when the broker does not take the messages
BrokerErrors = (KafkaError, OSError, TimeoutError, BrokerDown)


class Broker:
    """A started-on-demand producer with ``acks=all``; ``reachable()`` for readiness.

    A produce that fails marks the broker down: until a probe (every :data:`PROBE_INTERVAL_S`) finds it
    answering again, produces are refused at once with :class:`BrokerDown` rather than each waiting the
    producer's request timeout (10 s) for its 503: in an outage the first request waits, not every one."""

    def __init__(self, settings: Settings, *, send_timeout: float = 15.0) -> None:
        self._settings = settings
        self._send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    async def producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self._settings.bootstrap_servers, acks="all",
                                            linger_ms=1, request_timeout_ms=10_000, **kafka_options(self._settings))
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send_all(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        """Produce ``(topic, key, value)`` messages and wait until every one is acknowledged by all
        in-sync replicas; raises one of :data:`BrokerErrors` otherwise (some may have been written:
        the engine dedupes on ``event_id``, so the client's retry is safe)."""
        await self.send_traced([(topic, key, value, []) for topic, key, value in messages])

    async def send_traced(self, messages: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        """:meth:`send_all` with Kafka headers on each message (provenance such as ``ats-redrive-of``)."""
        async def send() -> None:
            producer = await self.producer()
            futures = [await producer.send(topic, value, key=key, headers=headers or None)
                       for topic, key, value, headers in messages]
            await asyncio.gather(*futures)

        if self._down_since is not None:
            raise BrokerDown(f"the broker failed a produce {time.monotonic() - self._down_since:.0f} s ago and "
                             "has not answered since")
        try:
            await asyncio.wait_for(send(), self._send_timeout)
        except BrokerErrors as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning("the broker failed a produce (%r): produces are refused until it answers again", exc)
            self._down_since = time.monotonic()
            self._probe = asyncio.create_task(self._until_it_answers(), name="broker-probe")

    async def _until_it_answers(self) -> None:
        while True:  # polling: nothing announces a broker that is back
            if await self._answers():
                break
            await asyncio.sleep(PROBE_INTERVAL_S)
        log.warning("the broker answers again after %.1f s", time.monotonic() - (self._down_since or 0.0))
        self._down_since = None

    async def _answers(self) -> bool:
        try:
            producer = await asyncio.wait_for(self.producer(), 3.0)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 2.0)
        except BrokerErrors:
            return False
        return True

    async def reachable(self) -> bool:
        if self._down_since is not None:
            return False
        if not await self._answers():
            log.warning("broker unreachable")
            return False
        return True

    async def close(self) -> None:
        if self._probe is not None:
            await stop([self._probe])
            self._probe = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
