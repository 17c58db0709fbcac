"""The simulator's two ways into the product, as a producer and a client would use them: events to Kafka
(keyed by location, to their type's topic) and holds and reads over the HTTP API."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError


@dataclass(frozen=True)
class Target:
    """Where the product runs: what ``ats simulate`` found configured, or started itself."""

    bootstrap: list[str]
    redis_url: str
    api_url: str
    token: str
    partitions: int
    erp_window_s: int
    erp_grace_s: int
    tick_ms: int
    #: ``ATS_REDIS_CLUSTER``: ``redis_url`` names one node of a Redis Cluster
    redis_cluster: bool = False


class Sink:
    """An aiokafka producer (acks=all) that keeps at most ``window`` sends in flight, and optionally writes
    every event it sends to a JSON-lines file that ``ats replay`` reads back."""

    def __init__(self, bootstrap: list[str], *, record: Path | None = None, window: int = 20_000) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                         max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
        self.window = window
        self.pending: list[asyncio.Future[Any]] = []
        self.record_path = record
        self.record: IO[bytes] | None = None
        #: (topic, partition) → the next offset after the last record this sink produced there: the true
        #: end of what it wrote (the embedded broker's listed end offsets stop short of a multi-record batch)
        self.ends: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        await self.producer.start()
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self.record = self.record_path.open("wb")

    async def send(self, topic: str, key: str, event: dict[str, Any], partition: int | None = None) -> None:
        await self.send_raw(topic, key, orjson.dumps(event), partition)

    async def send_raw(self, topic: str, key: str, value: bytes, partition: int | None = None) -> None:
        future = await self.producer.send(topic, value, key=key.encode(), partition=partition)
        future.add_done_callback(self._ended)
        self.pending.append(future)
        if self.record is not None:
            self.record.write(value + b"\n")
        if len(self.pending) >= self.window:
            await self.settle()

    def _ended(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            sent = future.result()
            key = (sent.topic, sent.partition)
            self.ends[key] = max(self.ends.get(key, 0), sent.offset + 1)

    async def settle(self) -> None:
        pending, self.pending = self.pending, []
        await asyncio.gather(*pending)

    async def stop(self) -> None:
        try:
            await self.settle()
            await self.producer.flush()
        finally:
            await self.producer.stop()
            if self.record is not None:
                self.record.close()


class Committed:
    """How far the engine's consumer group has committed on each partition (OffsetFetch for the group,
    without joining it): the lag of what this run produced = its end offsets - the group's commits."""

    def __init__(self, bootstrap: list[str], group: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def lag(self, ends: dict[tuple[str, int], int]) -> int | None:
        wanted = list(ends.items())
        try:
            answers = await asyncio.gather(*(self.consumer.committed(TopicPartition(topic, partition))
                                             for (topic, partition), _ in wanted))
        except KafkaError:
            return None
        return sum(max(0, end - (committed or 0)) for (_, end), committed in zip(wanted, answers, strict=True))


class Api:
    """The HTTP API with a bearer token: each call returns (status, body, milliseconds)."""

    def __init__(self, url: str, token: str, *, connections: int = 128) -> None:
        self.url = url.rstrip("/")
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        started = time.perf_counter()
        try:
            async with self.session.request(method, self.url + path, json=body) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            return 599, None, (time.perf_counter() - started) * 1000
        ms = (time.perf_counter() - started) * 1000
        try:
            return status, orjson.loads(raw) if raw else None, ms
        except orjson.JSONDecodeError:
            return status, None, ms

    async def availability(self, sku: str, locations: tuple[str, ...] = ()) -> tuple[int, Any, float]:
        query = "&".join(f"location={quote(location)}" for location in locations)
        return await self.call("GET", f"/v1/availability/{quote(sku, safe='')}" + (f"?{query}" if query else ""))

    async def query(self, skus: list[str], locations: list[str]) -> tuple[int, Any, float]:
        return await self.call("POST", "/v1/availability/query", {"skus": skus, "locations": locations})

    async def hold(self, reservation_id: str, location_id: str, lines: tuple[tuple[str, int], ...],
                   ttl_seconds: int) -> tuple[int, Any, float]:
        return await self.call("POST", "/v1/reservations", {
            "reservation_id": reservation_id, "location_id": location_id, "ttl_seconds": ttl_seconds,
            "channel": "ecom", "lines": [{"sku": sku, "qty": qty} for sku, qty in lines]})

    async def reservation(self, reservation_id: str) -> tuple[int, Any, float]:
        return await self.call("GET", f"/v1/reservations/{quote(reservation_id, safe='')}")

    async def release(self, reservation_id: str) -> tuple[int, Any, float]:
        return await self.call("DELETE", f"/v1/reservations/{quote(reservation_id, safe='')}")
