"""The API's Kafka producer: ingest and reservation commands go through it."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from availability.settings import Settings

log = logging.getLogger(__name__)


class Broker:
    """A started-on-demand producer with ``acks=all``; ``reachable()`` for readiness."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self._settings.bootstrap_servers, acks="all",
                                            linger_ms=1, request_timeout_ms=10_000)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def reachable(self) -> bool:
        try:
            producer = await asyncio.wait_for(self.producer(), 3.0)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("broker unreachable: %s", exc)
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
