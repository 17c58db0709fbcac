"""Recovery: a worker started on an empty data dir with N positions in the changelog, to ready.

``python -m benchmarks.recovery [--positions N]`` (default 1,000,000), on the embedded broker and cache:

1. a first worker applies N receipts' positions (1,000-line envelopes, one per location), flushes them to
   its changelog and is stopped (SIGTERM);
2. **baseline**: a plain aiokafka consumer reads the whole changelog topic (no group, every partition
   from the beginning, ``getmany``), the floor of any rebuild from it;
3. the cache is flushed (``FLUSHALL``: the positions must come back from the changelog, not from the
   cache) and the API started; then a new worker on an **empty data dir** is spawned, and timed until
   ``GET /readyz`` answers 200 (its heartbeat says caught up) *and* ``GET /v1/availability/{sku}`` serves
   Σ on_hand of 40 SKUs (each at every location) as the workload's arithmetic.

Target (issue 6): ready in ≤ 30 s with 1M positions. The recovered worker's RSS is printed too.
``--profile FILE`` records the recovering worker with py-spy (raw; sum it with ``python -m benchmarks.profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from availability import topics
from streams import embedded

from . import positions
from . import rig as rigs

TARGET_S = 30.0


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=1_000_000, help="positions in the changelog (default 1M)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    parser.add_argument("--profile", type=Path, help="py-spy record the recovering worker into this file (raw)")
    parser.add_argument("--log", type=Path, help="keep the recovering worker's log in this file (each partition's "
                                                   "load is timed there)")
    return parser.parse_args(argv)


async def read_changelog(rig: rigs.Rig, idle_ms: int = 1500) -> tuple[int, int, float]:
    """(records, bytes, seconds from the first fetch to the last record) of the whole changelog."""
    consumer = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=25,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.CHANGELOG_TOPIC, p) for p in range(rig.settings.partitions)])
        await consumer.seek_to_beginning()
        records = size = 0
        started = last = time.perf_counter()
        while batches := await consumer.getmany(timeout_ms=idle_ms, max_records=100_000):
            for batch in batches.values():
                records += len(batch)
                size += sum(len(record.value or b"") for record in batch)
            last = time.perf_counter()
        return records, size, last - started
    finally:
        await consumer.stop()


async def until_ready(url: str, token: str, expected: dict[str, int], locations: int, started: float,
                      worker: Any, limit_s: float = 600) -> tuple[float, float]:
    """(seconds to /readyz 200, seconds to every sampled SKU served right), from ``started``."""
    ready = served = 0.0
    pending = dict(expected)
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
        while not (ready and served):
            if worker.poll() is not None:
                raise RuntimeError(f"the recovering worker exited ({worker.returncode})")
            if time.monotonic() - started > limit_s:
                raise TimeoutError(f"not ready after {limit_s} s (readyz {bool(ready)}, {len(pending)} SKUs unserved)")
            if not ready:
                async with http.get("/readyz") as response:
                    if response.status == 200:
                        ready = time.monotonic() - started
            for name, on_hand in list(pending.items()):
                async with http.get(f"/v1/availability/{name}") as response:
                    if response.status != 200:
                        break
                    answer = await response.json()
                if len(answer["locations"]) != locations or sum(e["on_hand"] for e in answer["locations"]) != on_hand:
                    break
                del pending[name]
            if not pending and not served:
                served = time.monotonic() - started
            await asyncio.sleep(0.05)
    return ready, served


async def flush_cache(rig: rigs.Rig) -> None:
    cache = Redis.from_url(rig.settings.redis_url or "")
    try:
        await cache.flushall()
    finally:
        await cache.aclose()


def measure(count: int, partitions: int, profile: Path | None = None, log: Path | None = None) -> dict[str, Any]:
    workload = positions.build(count, partitions)
    locations = len(workload.messages)
    with rigs.rig(partitions) as rig:
        first = rigs.spawn_worker(rig, "worker-1")
        try:
            applied_s = asyncio.run(positions.produce_and_wait(rig, workload, first))
            flushed_s = asyncio.run(positions.until_flushed(rig, positions.input_ends([workload], partitions), first))
            first_rss = positions.rss_mb(first.pid)
        finally:
            embedded.stop_process(first, timeout=60)
        records, size, read_s = asyncio.run(read_changelog(rig))
        asyncio.run(flush_cache(rig))
        token = secrets.token_urlsafe(16)
        api, url = positions.start_api(rig, token)
        try:
            started = time.monotonic()
            second = rigs.spawn_worker(rig, "worker-2")
            spy = None if profile is None else subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(second.pid), "--rate", "50",
                 "--format", "raw", "-o", str(profile), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                ready_s, served_s = asyncio.run(until_ready(url, token, workload.sample(), locations, started, second))
                second_rss = positions.rss_mb(second.pid)
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
                embedded.stop_process(second, timeout=60)
                if log is not None:
                    shutil.copyfile(rig.root / "worker-2.log", log)
        finally:
            embedded.stop_process(api, timeout=20)
    total = max(ready_s, served_s)
    return {
        "positions": workload.lines, "locations": locations, "partitions": partitions, "store": "rocksdb",
        "first_worker_applied_s": round(applied_s, 1),
        "first_worker_flushed_s": round(applied_s + flushed_s, 1), "first_worker_rss_mb": round(first_rss),
        "changelog_records": records, "changelog_mb": round(size / 2**20, 1),
        "plain_read_changelog_s": round(read_s, 2),
        "readyz_s": round(ready_s, 2), "served_s": round(served_s, 2), "ready_s": round(total, 2),
        "ratio_to_plain_read": round(total / read_s, 1) if read_s else None,
        "recovered_worker_rss_mb": round(second_rss), "checked_skus": len(workload.sample()),
        "target_s": TARGET_S, "met": total <= TARGET_S, "worker_tuning": rigs.tuning(),
    }


def report(figures: dict[str, Any]) -> None:
    print(f"recovery: {figures['positions']:,} positions ({figures['locations']:,} locations of 1,000 SKUs), "
          f"{figures['partitions']} partitions, {figures['store']} store; the first worker applied them in "
          f"{figures['first_worker_applied_s']} s, in its changelog after {figures['first_worker_flushed_s']} s "
          f"(RSS {figures['first_worker_rss_mb']:,} MiB)")
    print(f"  baseline plain aiokafka read of the changelog: {figures['plain_read_changelog_s']:>7} s "
          f"({figures['changelog_records']:,} records, {figures['changelog_mb']} MiB)")
    print(f"  new worker, empty data dir → /readyz 200:      {figures['readyz_s']:>7} s")
    print(f"  new worker, empty data dir → positions served: {figures['served_s']:>7} s   "
          f"(target ready ≤ {TARGET_S:.0f} s: {'met' if figures['met'] else 'missed'}; "
          f"{figures['ratio_to_plain_read']} times the plain read)")
    print(f"  recovered worker RSS {figures['recovered_worker_rss_mb']:,} MiB; Σ on_hand of "
          f"{figures['checked_skus']} SKUs served as the workload's arithmetic")
    rigs.print_tuning(figures)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print; returns the figures (``make bench`` writes them with the others)."""
    args = arguments(argv)
    figures = measure(args.positions, args.partitions, args.profile, args.log)
    report(figures)
    return figures


if __name__ == "__main__":
    rigs.script("recovery", run)
