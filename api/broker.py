"""The API's Kafka producer: ingest and reservation commands go through it."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from availability.connections import kafka_options
from availability.settings import Settings

log = logging.getLogger(__name__)

#: what a produce raises when the broker does not take the messages
BrokerErrors = (KafkaError, OSError, TimeoutError)


class Broker:
    """A started-on-demand producer with ``acks=all``; ``reachable()`` for readiness."""

    def __init__(self, settings: Settings, *, send_timeout: float = 15.0) -> None:
        self._settings = settings
        self._send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

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

        await asyncio.wait_for(send(), self._send_timeout)

    async def reachable(self) -> bool:
        try:
            producer = await asyncio.wait_for(self.producer(), 3.0)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 2.0)
        except BrokerErrors as exc:
            log.warning("broker unreachable: %s", exc)
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
