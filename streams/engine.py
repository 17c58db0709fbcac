"""The engine agent (foundation: heartbeat and acks; the domain is wired in by the engine issue)."""

from __future__ import annotations

import os
import socket
import time

import faust
import orjson
from redis.asyncio import Redis

from availability import topics
from availability.settings import Settings


class Engine:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.cache = Redis.from_url(settings.redis_url or "", socket_timeout=5.0)
        self.inputs = app.topic(*topics.CONSUMED_TOPICS, value_serializer="raw", key_serializer="raw")
        app.agent(self.inputs, name="engine")(self.process)
        app.timer(settings.tick_interval_ms / 1000, name="heartbeat")(self.heartbeat)

    async def process(self, stream: faust.StreamT[bytes]) -> None:
        window = self.settings.batch_window_ms / 1000
        async for events in stream.noack_take(  # type: ignore[attr-defined]
           self.settings.batch_max, window):
            for event in events:
                await stream.ack(event)

    async def heartbeat(self) -> None:
        beat = {"at": time.time(), "worker": self.worker_id, "caught_up": True}
        await self.cache.set(topics.heartbeat_key(self.worker_id), orjson.dumps(beat), ex=30)
