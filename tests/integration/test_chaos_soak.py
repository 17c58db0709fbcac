"""Chaos: a soak. POS envelopes (``benchmarks/workload.py``: Zipf SKUs over 20,000 SKUs and 200 stores)
produced at a steady rate for ``ATS_CHAOS_SOAK_SECONDS`` (default 60; 600 is the real ten minutes) at
``ATS_CHAOS_SOAK_RATE`` messages/s of 10 lines (default 50: 500 lines/s, what a worker sustains on a
shared 2-core CI machine with room to spare), one worker. Sampled every 2 s: the worker's
RSS and its lag (from its heartbeat). Checked: every line applied (Σ on_hand per SKU of a sample equals
the workload's arithmetic), lag bounded, memory flat once warm, no ERROR line in the worker's log.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from availability import topics
from benchmarks.workload import build, sentinel_event
from streams.admin import ensure_topics
from streams.embedded import start_cache

from .chaos import report
from .cluster import Cluster, eventually
from .conftest import ready

SECONDS = float(os.environ.get("ATS_CHAOS_SOAK_SECONDS", "60"))
RATE = int(os.environ.get("ATS_CHAOS_SOAK_RATE", "50"))
LINES = 10
PARTITIONS = 4

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow,
              pytest.mark.timeout(int(SECONDS) * 3 + 300)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_soak_memory_flat_lag_bounded_no_errors(own_broker: str, tmp_path: Path) -> None:
    cache = start_cache(tmp_path / "cache")  # its own: the workload's SKU names are fixed
    cluster = Cluster(own_broker, cache.url, tmp_path, partitions=PARTITIONS)
    await ensure_topics(cluster.settings)
    workload = build(int(SECONDS * RATE * LINES), LINES, PARTITIONS)
    samples: list[dict[str, Any]] = []
    producer = AIOKafkaProducer(bootstrap_servers=cluster.settings.bootstrap_servers, acks="all", linger_ms=5)
    try:
        worker = cluster.start_worker("w0")
        await ready(cluster)
        log_start = len(cluster.log("w0"))
        await producer.start()
        started = time.monotonic()
        sampler = asyncio.create_task(sample(cluster, worker.pid, started, samples))
        for index, (topic, key, value) in enumerate(workload.messages):
            await producer.send(topic, value, key=key)
            if index % max(1, RATE // 10) == 0:
                await asyncio.sleep(max(0.0, started + index / RATE - time.monotonic()))
        await producer.flush()
        produced_in = time.monotonic() - started
        for topic, partition, sku, location in workload.sentinels:
            await producer.send(topic, sentinel_event(topic, sku, location), key=location.encode(), partition=partition)
        await producer.flush()
        for _, _, sku, location in workload.sentinels:
            await eventually(lambda sku=sku, location=location: cluster.position(sku, location), timeout=300,
                             what=f"sentinel {sku}")
        drained = time.monotonic() - started - produced_in
        sampler.cancel()
        wrong = {sku: (await on_hand(cluster, sku), want) for sku, want in workload.sample().items()
                 if await on_hand(cluster, sku) != want}
        assert wrong == {}, f"Σ on_hand differs for {len(wrong)} SKUs: {list(wrong.items())[:5]}"
        errors = [line for line in cluster.log("w0")[log_start:].splitlines() if "[ERROR]" in line]
        assert errors == [], errors[:5]
        warm = [s for s in samples if s["t"] > min(20.0, SECONDS / 3)]
        assert warm, samples
        rss = [s["rss_mb"] for s in warm]
        lag = max(s["lag"] for s in samples)
        growth = rss[-1] - rss[0]
        report(f"soak {SECONDS:.0f} s", rate_msgs=RATE, lines=workload.lines, produced_s=round(produced_in, 1),
               drained_after_s=round(drained, 1), rss_warm_mb=round(rss[0], 1), rss_end_mb=round(rss[-1], 1),
               rss_max_mb=round(max(rss), 1), max_lag=lag, error_lines=len(errors),
               positions=sum(1 for _ in workload.on_hand))
        assert lag <= RATE * 20, f"lag reached {lag} records (over 20 s of load)"
        assert growth <= max(64.0, 0.25 * rss[0]), f"RSS grew {growth:.0f} MB once warm: {rss}"
    finally:
        await producer.stop()
        await cluster.close()
        cache.stop()


async def sample(cluster: Cluster, pid: int, started: float, samples: list[dict[str, Any]]) -> None:
    while True:
        lag = 0
        async for key in cluster.cache.scan_iter(match=topics.HEARTBEAT_PREFIX + "*"):
            raw = await cluster.cache.get(key)
            lag += orjson.loads(raw)["lag"] if raw else 0
        samples.append({"t": time.monotonic() - started, "rss_mb": rss_mb(pid), "lag": lag})
        await asyncio.sleep(2.0)


async def on_hand(cluster: Cluster, sku: str) -> int:
    return sum(value[0] for value in (await cluster.positions(sku)).values())
