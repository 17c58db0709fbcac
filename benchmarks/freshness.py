"""Freshness: how long a receipt takes to show in ``GET /v1/availability/{sku}``, under background load.

``python -m benchmarks.freshness [--seconds S] [--load LINES_PER_S]``: the embedded broker and cache on
free ports, ``ats up`` on them (one worker, the API), then for ``S`` seconds (default 30):

* **background**: ``LOAD`` lines/s (default 2,000) of POS sale/receipt envelopes (10 lines each,
  Zipf-popular SKUs over 20,000 SKUs, 200 stores), produced to Kafka keyed by location every 50 ms;
* **probe**: every 100 ms a one-unit receipt of one probe SKU at a probe location, produced to Kafka as a
  WMS would; its freshness runs from just before the send to the first API answer whose ``on_hand``
  includes it (the API is polled every ~5 ms by one client; probe ``n`` is seen once ``on_hand ≥ n + 1``);
* **baseline**: ``GET /healthz`` of the same API, once per probe: the HTTP round trip alone.

Target (issue 6): freshness p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from availability import topics

from . import rig as rigs
from .domain import envelopes
from .holds import percentile

TARGET_P99_MS = 100.0
PROBE_EVERY_S = 0.1
LOAD_TICK_S = 0.05
LOAD_LINES = 10  # lines per background envelope
PROBE_SKU, PROBE_LOCATION = "FRESH-PROBE", "FRESH-LOC"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.freshness", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="probing time (default 30)")
    parser.add_argument("--load", type=int, default=2_000, help="background lines/s (default 2,000)")
    return parser.parse_args(argv)


def receipt(event_id: str, location: str, lines: list[tuple[str, int]]) -> bytes:
    return orjson.dumps({"event_id": event_id, "type": "receipt", "occurred_at": "2026-11-27T10:00:00Z",
                         "location_id": location, "lines": [{"sku": s, "qty": q} for s, q in lines]})


async def background(producer: AIOKafkaProducer, load: int, stop: asyncio.Event) -> int:
    """``load`` lines/s until ``stop``; returns the lines produced."""
    per_tick = max(1, round(load * LOAD_TICK_S / LOAD_LINES))
    pool = envelopes(2_000, LOAD_LINES, seed=3)
    produced, index, started = 0, 0, time.monotonic()
    while not stop.is_set():
        for _ in range(per_tick):
            body = orjson.loads(pool[index % len(pool)])
            body["event_id"] = f"fresh-load-{index}"
            kind = body["type"]
            await producer.send(topics.TOPIC_FOR_TYPE[kind], orjson.dumps(body), key=body["location_id"].encode())
            produced += len(body["lines"])
            index += 1
        ticks = int((time.monotonic() - started) / LOAD_TICK_S) + 1
        await asyncio.sleep(max(0.0, started + ticks * LOAD_TICK_S - time.monotonic()))
    return produced


async def seen_on_hand(http: aiohttp.ClientSession) -> int:
    async with http.get(f"/v1/availability/{PROBE_SKU}", params={"location": PROBE_LOCATION}) as response:
        if response.status != 200:
            return -1
        body = await response.json()
    return sum(entry["on_hand"] for entry in body["locations"])


async def probe(url: str, token: str, producer: AIOKafkaProducer, seconds: float,
                base: int) -> tuple[list[float], list[float]]:
    """Probe receipts every 100 ms on top of ``base`` units; (freshness ms per probe, /healthz ms per probe)."""
    sent: list[float] = []
    fresh: dict[int, float] = {}
    health: list[float] = []
    done = asyncio.Event()

    async def send() -> None:
        started = time.monotonic()
        count = int(seconds / PROBE_EVERY_S)
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n * PROBE_EVERY_S - time.monotonic()))
            sent.append(time.perf_counter())
            await producer.send_and_wait(topics.RECEIPTS, receipt(f"fresh-probe-{n}-{time.time_ns()}",
                                                                  PROBE_LOCATION, [(PROBE_SKU, 1)]),
                                         key=PROBE_LOCATION.encode())
            before = time.perf_counter()
            async with http.get("/healthz") as response:
                assert response.status == 200
            health.append((time.perf_counter() - before) * 1000)
        done.set()

    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
        sender = asyncio.create_task(send())
        deadline = None
        while len(fresh) < len(sent) or not done.is_set():
            on_hand = await seen_on_hand(http)
            now = time.perf_counter()
            for n in range(len(fresh), min(on_hand - base, len(sent))):
                fresh[n] = (now - sent[n]) * 1000
            if done.is_set():
                deadline = deadline or time.monotonic() + 30
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(sent) - len(fresh)} probes never showed in the API")
            await asyncio.sleep(0.005)
        await sender
    return [fresh[n] for n in sorted(fresh)], health


async def measure_async(url: str, token: str, bootstrap: list[str], seconds: float, load: int) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
            # the probe position exists and the worker has joined before anything is timed
            await producer.send_and_wait(topics.RECEIPTS, receipt("fresh-probe-start", PROBE_LOCATION,
                                                                  [(PROBE_SKU, 1)]), key=PROBE_LOCATION.encode())
            deadline = time.monotonic() + 120
            while await seen_on_hand(http) < 1:
                if time.monotonic() > deadline:
                    raise TimeoutError("the worker did not apply the first receipt within 120 s")
                await asyncio.sleep(0.1)
        stop = asyncio.Event()
        loader = asyncio.create_task(background(producer, load, stop))
        await asyncio.sleep(2)  # the load runs before the first probe
        started = time.monotonic()
        fresh, health = await probe(url, token, producer, seconds, base=1)
        stop.set()
        lines = await loader
        load_s = time.monotonic() - started + 2
    finally:
        await producer.stop()
    return {"fresh": fresh, "health": health, "load_lines_per_s": round(lines / load_s)}


def measure(seconds: float, load: int) -> dict[str, Any]:
    with rigs.rig(8) as rig:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
        env.update(ATS_DATA_DIR=str(rig.root / "up"), ATS_BROKER_URL=rig.settings.broker_url or "",
                   ATS_REDIS_URL=rig.settings.redis_url or "", ATS_PARTITIONS=str(rig.settings.partitions),
                   ATS_SESSION_TIMEOUT_SECONDS="3", ATS_HEARTBEAT_INTERVAL_SECONDS="0.5", ATS_LOG_LEVEL="warning")
        env.update(rigs.tuning())
        up, url, token = rigs.start_up(env)
        try:
            raw = asyncio.run(measure_async(url, token, rig.bootstrap, seconds, load))
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
    fresh, health = raw["fresh"], raw["health"]
    return {
        "probes": len(fresh), "probe_every_ms": PROBE_EVERY_S * 1000, "load_lines_per_s_target": load,
        "load_lines_per_s": raw["load_lines_per_s"],
        **{f"fresh_p{p}_ms": round(percentile(fresh, p / 100), 1) for p in (50, 90, 99)},
        "fresh_max_ms": round(max(fresh), 1),
        **{f"healthz_p{p}_ms": round(percentile(health, p / 100), 1) for p in (50, 90, 99)},
        "target_p99_ms": TARGET_P99_MS, "met": percentile(fresh, .99) <= TARGET_P99_MS,
        "worker_tuning": rigs.tuning(),
    }


def report(figures: dict[str, Any]) -> None:
    print(f"freshness: {figures['probes']} probe receipts, one every {figures['probe_every_ms']:.0f} ms, under "
          f"{figures['load_lines_per_s']:,} background lines/s (target {figures['load_lines_per_s_target']:,})")
    print(f"  probe produced → shown by GET /v1/availability: p50 {figures['fresh_p50_ms']} ms, "
          f"p90 {figures['fresh_p90_ms']} ms, p99 {figures['fresh_p99_ms']} ms, max {figures['fresh_max_ms']} ms "
          f"(target p99 ≤ {TARGET_P99_MS:.0f} ms: {'met' if figures['met'] else 'missed'})")
    print(f"  baseline GET /healthz round trip:             p50 {figures['healthz_p50_ms']} ms, "
          f"p90 {figures['healthz_p90_ms']} ms, p99 {figures['healthz_p99_ms']} ms")
    rigs.print_tuning(figures)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print; returns the figures (``make bench`` writes them with the others)."""
    args = arguments(argv)
    figures = measure(args.seconds, args.load)
    report(figures)
    return figures


if __name__ == "__main__":
    rigs.script("freshness", run)
