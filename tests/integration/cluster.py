"""A real deployment for tests: worker processes on a real broker and cache, and a producer."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import cacheclient
from availability import topics
from availability.connections import kafka_options
from availability.settings import load_settings
from streams.embedded import stop_process


class Cluster:
    def __init__(self, broker_url: str, redis_url: str, root: Path, *, partitions: int, store: str = "memory",
                 env: dict[str, str] | None = None):
        self.extra_env = env or {}
        self.broker_url = broker_url
        self.redis_url = redis_url
        self.root = root
        self.partitions = partitions
        self.store = store
        self.settings = load_settings({"ATS_BROKER_URL": broker_url, "ATS_REDIS_URL": redis_url,
                                       "ATS_PARTITIONS": str(partitions), **self.extra_env})
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.cache = cacheclient.connect(self.settings)  # a Redis Cluster with ATS_REDIS_CLUSTER=true
        self.producer: AIOKafkaProducer | None = None

    # ---- workers -------------------------------------------------------------------------------
    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
        env.update(ATS_BROKER_URL=self.broker_url, ATS_REDIS_URL=self.redis_url, ATS_PARTITIONS=str(self.partitions),
                   ATS_DATA_DIR=str(self.root / name), ATS_STORE=self.store, ATS_SESSION_TIMEOUT_SECONDS="3",
                   ATS_HEARTBEAT_INTERVAL_SECONDS="0.5", ATS_TICK_INTERVAL_MS="200", ATS_LOG_LEVEL="info",
                   ATS_WORKER_METRICS_PORT="0")  # several workers share this machine; a test that scrapes sets one
        env.update(self.extra_env)
        return env

    def start_worker(self, name: str = "w0", *, wipe: bool = False) -> subprocess.Popen[bytes]:
        if wipe:
            shutil.rmtree(self.root / name, ignore_errors=True)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("ab")
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=self.env(name), stdout=log,
                                  stderr=subprocess.STDOUT)
        log.close()
        self.workers[name] = worker
        return worker

    def kill(self, name: str = "w0") -> None:
        worker = self.workers.pop(name)
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    def stop(self, name: str = "w0") -> None:
        stop_process(self.workers.pop(name), timeout=20)

    async def dump_tasks(self) -> None:
        """Ask every running worker to write its threads and asyncio tasks to its log (mode's SIGUSR1
        handler), so a test that gives up on a stalled worker leaves what it was waiting on."""
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.0)

    def log(self, name: str = "w0") -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    async def close(self) -> None:
        for name in list(self.workers):
            self.stop(name)
        if self.producer is not None:
            await self.producer.stop()
        await self.cache.aclose()

    # ---- input ---------------------------------------------------------------------------------
    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, acks="all",
                                             linger_ms=5, **kafka_options(self.settings))
            await self.producer.start()
        return self.producer

    async def send(self, topic: str, event: dict[str, Any] | bytes | None, *, key: str | bytes | None = None,
                   ) -> tuple[str, int, int]:
        """Produce one message; returns where it landed ``(topic, partition, offset)``."""
        producer = await self._producer()
        value = orjson.dumps(event) if isinstance(event, dict) else event
        if key is None and isinstance(event, dict):
            key = event.get("location_id") or event.get("from_location_id")
        raw_key = key.encode() if isinstance(key, str) else key
        metadata = await producer.send_and_wait(topic, value, key=raw_key)
        return metadata.topic, metadata.partition, metadata.offset

    async def send_many(self, messages: list[tuple[str, dict[str, Any], str | None]]) -> None:
        """Produce many ``(topic, event, key)``; a key of None means the event's location."""
        producer = await self._producer()
        futures = []
        for topic, event, key in messages:
            key = key or event.get("location_id") or event.get("from_location_id")
            futures.append(await producer.send(topic, orjson.dumps(event), key=str(key).encode()))
        await asyncio.gather(*futures)

    # ---- output --------------------------------------------------------------------------------
    async def position(self, sku: str, location_id: str) -> list[int] | None:
        raw = await self.cache.hget(topics.position_key(sku), location_id)
        return orjson.loads(raw) if raw else None

    async def positions(self, sku: str) -> dict[str, list[int]]:
        raw = await self.cache.hgetall(topics.position_key(sku))
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    async def decision(self, reservation_id: str) -> dict[str, Any] | None:
        raw = await self.cache.get(topics.reservation_key(reservation_id))
        return orjson.loads(raw) if raw else None

    async def records(self, topic: str, match: Callable[[dict[str, Any]], bool],
                      until: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 60,
                      ) -> list[dict[str, Any]]:
        """Every record of ``topic`` (from its beginning) that ``match`` picks, read at least to the end
        offsets listed at the start and then until ``until`` holds."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, enable_auto_commit=False,
                                    **kafka_options(self.settings))
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            partitions = range(self.partitions)  # ensure_topics gave every topic this many
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    found.extend(r for record in records if match(r := orjson.loads(record.value)))
                caught_up = all([await consumer.position(tp) >= end for tp, end in ends.items()])
                if caught_up and until(found):
                    return found
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: condition not reached within {timeout} s; read {found!r}"[:4000])
        finally:
            await consumer.stop()

    async def dead_letters(self, match: Callable[[dict[str, Any]], bool], *, expect: int,
                           timeout: float = 30) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=self.settings.bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    **kafka_options(self.settings))
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(found) < expect:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(r for record in records if match(r := orjson.loads(record.value)))
        finally:
            await consumer.stop()
        return found


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; the last value is in the failure message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s; last value {last!r}")
