"""What the recovery and memory benchmarks share: a state of N positions built cheaply (receipts in
1,000-line envelopes: one per location, 1,000 SKUs each), one-line events that only add remembered
event ids, a worker's RSS, and an API process beside a worker the benchmark starts and stops itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from availability import topics
from availability.routing import location_on, owner_partition
from streams import embedded

from .rig import Rig
from .workload import SENTINEL_SKU, Workload, produce

SKUS_PER_LOCATION = 1_000  # lines per envelope: the contract's maximum


def location(index: int) -> str:
    return f"POS-L-{index:05d}"


def sku(index: int) -> str:
    return f"POS-SKU-{index}"


def _sentinels(workload: Workload, partitions: int, tag: str) -> None:
    for partition in range(partitions):
        where = location_on(partition, partitions, f"BENCH-{tag}")
        workload.sentinels.append((topics.RECEIPTS, partition, f"{SENTINEL_SKU}-{tag}-{partition}", where))


def build(positions: int, partitions: int, *, first: int = 0) -> Workload:
    """``positions`` distinct (SKU, location) receipts in envelopes of 1,000 lines, one location each,
    locations numbered from ``first``."""
    messages = []
    on_hand: dict[str, int] = defaultdict(int)
    for index in range(first, first + max(1, positions // SKUS_PER_LOCATION)):
        where = location(index)
        lines = [{"sku": sku(j), "qty": 1 + (index + j) % 5} for j in range(SKUS_PER_LOCATION)]
        for line in lines:
            on_hand[line["sku"]] += line["qty"]
        body = {"event_id": f"pos-{index}", "type": "receipt", "occurred_at": "2026-11-27T06:00:00Z",
                "location_id": where, "lines": lines}
        messages.append((topics.RECEIPTS, where.encode(), orjson.dumps(body)))
    workload = Workload(messages, len(messages) * SKUS_PER_LOCATION, dict(on_hand))
    _sentinels(workload, partitions, f"positions-{first}")
    return workload


def sentinels_only(partitions: int, tag: str) -> Workload:
    """Nothing but one sentinel per partition: applied once the worker has joined and caught up."""
    workload = Workload([], 0, {})
    _sentinels(workload, partitions, tag)
    return workload


def event_ids(count: int, partitions: int, tag: str) -> Workload:
    """``count`` one-line receipts of one unit, each its own event id, onto positions :func:`build` made
    (so they add remembered ids, not positions)."""
    messages = []
    for index in range(count):
        where = location(index % 100)
        body = {"event_id": f"ids-{tag}-{index:09d}", "type": "receipt", "occurred_at": "2026-11-27T07:00:00Z",
                "location_id": where, "lines": [{"sku": sku(index % 7), "qty": 1}]}
        messages.append((topics.RECEIPTS, where.encode(), orjson.dumps(body)))
    workload = Workload(messages, count, {})
    _sentinels(workload, partitions, f"ids-{tag}")
    return workload


async def produce_and_wait(rig: Rig, workload: Workload, worker: subprocess.Popen[bytes],
                           limit_s: float = 900) -> float:
    """Produce ``workload``; seconds until every sentinel of it is in the cache."""
    started = time.monotonic()
    await produce(rig.bootstrap, workload)
    cache = Redis.from_url(rig.settings.redis_url or "")
    try:
        pending = {(topics.position_key(name), where) for _, _, name, where in workload.sentinels}
        while pending:
            for key, where in list(pending):
                if await cache.hexists(key, where):
                    pending.discard((key, where))
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode})")
            if time.monotonic() - started > limit_s:
                raise TimeoutError(f"{len(pending)} sentinels not in the cache after {limit_s} s")
            await asyncio.sleep(0.05)
    finally:
        await cache.aclose()
    return time.monotonic() - started


def input_ends(workloads: list[Workload], partitions: int) -> dict[int, int]:
    """Per partition, the receipts offset after the last message of ``workloads`` (produced to an empty topic)."""
    ends = dict.fromkeys(range(partitions), 0)
    for workload in workloads:
        for _, key, _ in workload.messages:
            ends[owner_partition(key.decode(), partitions)] += 1
        for _, partition, _, _ in workload.sentinels:
            ends[partition] += 1
    return ends


async def until_flushed(rig: Rig, ends: dict[int, int], worker: subprocess.Popen[bytes], limit_s: float = 900) -> float:
    """Seconds until every partition's flush marker in the changelog says its state has consumed the
    receipts up to ``ends``: the state is in the changelog, not only in the cache."""
    code = str(topics.TOPIC_CODE[topics.RECEIPTS])
    started = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.CHANGELOG_TOPIC, p) for p in ends])
        await consumer.seek_to_beginning()
        pending = {p for p, end in ends.items() if end}
        while pending:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=50_000)).values():
                for record in batch:
                    if (record.key or b"").startswith(b"m|") and record.value:
                        partition = int(record.key.split(b"|")[1])  # type: ignore[union-attr]
                        if orjson.loads(record.value)["inputs"].get(code, 0) >= ends.get(partition, 0):
                            pending.discard(partition)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode})")
            if time.monotonic() - started > limit_s:
                raise TimeoutError(f"partitions {sorted(pending)} not flushed after {limit_s} s")
    finally:
        await consumer.stop()
    return time.monotonic() - started


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of a process, MiB (``VmRSS``; ``VmHWM``: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def settle_rss(pid: int, seconds: float = 3.0) -> float:
    """RSS after ``seconds`` of quiet (at least two flush intervals: the last flush's buffers included)."""
    time.sleep(seconds)
    return rss_mb(pid)


def start_api(rig: Rig, token: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m api`` on a free port against the rig; (process, URL) once ``/healthz`` answers."""
    port = embedded.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_BROKER_URL=rig.settings.broker_url or "", ATS_REDIS_URL=rig.settings.redis_url or "",
               ATS_PARTITIONS=str(rig.settings.partitions), ATS_API_PORT=str(port), ATS_LOG_LEVEL="warning",
               ATS_API_TOKENS=f"{token}=availability:read", ATS_DATA_DIR=str(rig.root / "api"))
    with (rig.root / "api.log").open("ab") as log:
        api = embedded.child_process([sys.executable, "-m", "api"], log=log, env=env)
    embedded.wait_for_port(port, timeout=60, process=api)
    return api, f"http://127.0.0.1:{port}"
