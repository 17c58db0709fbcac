"""Helpers of the chaos suite (``make chaos``): a probe that reads the API while a fault lasts, and the
figures each fault reports (printed, and appended to ``ATS_CHAOS_REPORT``, default
``.ats/chaos-report.jsonl``, which the README's table quotes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from .apiserver import READER, bearer
from .cluster import Cluster, eventually
from .test_erp import posted_on_hand, postings, unique

Client = TestClient[Any, Any]


def report(fault: str, **figures: Any) -> None:
    path = Path(os.environ.get("ATS_CHAOS_REPORT", ".ats/chaos-report.jsonl"))
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"fault": fault, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    with path.open("ab") as out:
        out.write(orjson.dumps(line) + b"\n")
    print(f"\nchaos figures: {orjson.dumps(line).decode()}")


class Probe:
    """Reads one SKU through the API every ``interval`` seconds and keeps what it saw: statuses, the
    ``Retry-After`` of each 503, and every 200 whose answer differs from ``expected`` (a wrong answer)."""

    def __init__(self, client: Client, sku: str, expected: Callable[[dict[str, Any]], bool], *,
                 interval: float = 0.05) -> None:
        self.client, self.sku, self.expected, self.interval = client, sku, expected, interval
        self.statuses: Counter[int] = Counter()
        self.retry_after: set[str | None] = set()
        self.reasons: Counter[str] = Counter()  # the details of the 503s
        self.wrong: list[dict[str, Any]] = []
        self.last_503: float | None = None
        self.last_ok: float | None = None

    async def read_once(self) -> int:
        response = await self.client.get(f"/v1/availability/{self.sku}", headers=bearer(READER))
        body = await response.json()
        self.statuses[response.status] += 1
        if response.status == 503:
            self.retry_after.add(response.headers.get("Retry-After"))
            self.reasons[body["detail"].split(";")[0]] += 1
            assert response.content_type == "application/problem+json"
            self.last_503 = time.monotonic()
        elif response.status == 200:
            if self.expected(body):
                self.last_ok = time.monotonic()
            else:
                self.wrong.append(body)
        return response.status

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Probe]:
        async def loop() -> None:
            while True:
                with contextlib.suppress(OSError, asyncio.TimeoutError):
                    await self.read_once()
                await asyncio.sleep(self.interval)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> float:
    """Seconds until ``check`` holds (polled every 50 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def erp_agrees(cluster: Cluster, expected: dict[tuple[str, str], list[int]], *, timeout: float = 90) -> int:
    """Waits until the postings of ``expected``'s locations add up to its on_hand per position (the
    contract's conservation) with no posting id carrying two quantities; returns how many ids there are."""
    stores = {store for _, store in expected}
    want = {key: value[0] for key, value in expected.items() if value[0]}

    async def conserved() -> int:
        found = await postings(cluster, stores, lambda f: True, timeout=10)
        ids = unique(found)  # raises on an id sent with two quantities
        return len(ids) if posted_on_hand(found) == want else 0

    return int(await eventually(conserved, timeout=timeout, what="Σ posted == on_hand for every position"))
