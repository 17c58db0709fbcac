"""What the ingest benchmarks share: the broker and cache, the plain-read baseline, one engine worker
process timed through the cache, and the result file.

The broker and cache are the embedded ones, started here on free ports, unless ``ATS_BROKER_URL`` /
``ATS_REDIS_URL`` are set; those must be fresh (empty input topics, no worker group), since the engine's
topics, group and cache keys are fixed names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from availability import topics
from availability.settings import Settings, load_settings
from streams import embedded
from streams.admin import ensure_topics

from .workload import Workload

RESULTS = Path(".ats/bench")
POLL_S = 0.02
#: worker settings a run may vary (``ATS_FLUSH_INTERVAL_MS=5000 python -m benchmarks.ingest``); every other
#: ``ATS_*`` variable of the caller is left out of the worker's environment
TUNING = ("ATS_FLUSH_INTERVAL_MS", "ATS_BATCH_MAX", "ATS_BATCH_WINDOW_MS", "ATS_FETCH_WAIT_MS", "ATS_HISTORY_LIMIT",
          "ATS_CHANNELS_FILE")


def tuning() -> dict[str, str]:
    """The worker settings this run varies (see :data:`TUNING`)."""
    return {name: os.environ[name] for name in TUNING if name in os.environ}


@dataclass
class Rig:
    settings: Settings
    root: Path

    @property
    def bootstrap(self) -> list[str]:
        return self.settings.bootstrap_servers


@contextlib.contextmanager
def rig(partitions: int) -> Iterator[Rig]:
    """The broker and cache (embedded unless configured), every topic created, in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="ats-bench-") as scratch:
        root = Path(scratch)
        servers = []
        try:
            broker_url = os.environ.get("ATS_BROKER_URL")
            if not broker_url:
                servers.append(embedded.start_broker(root / "broker"))
                broker_url = servers[-1].url
            redis_url = os.environ.get("ATS_REDIS_URL")
            if not redis_url:
                servers.append(embedded.start_cache(root / "cache"))
                redis_url = servers[-1].url
            settings = load_settings({"ATS_BROKER_URL": broker_url, "ATS_REDIS_URL": redis_url,
                                      "ATS_PARTITIONS": str(partitions), "ATS_DATA_DIR": str(root)})
            asyncio.run(ensure_topics(settings))
            yield Rig(settings, root)
        finally:
            for server in reversed(servers):
                server.stop()


async def require_empty(rig: Rig, topic_names: tuple[str, ...]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topic_names for p in range(rig.settings.partitions)]
        ends = await consumer.end_offsets(tps)
        if any(ends.values()):
            raise SystemExit(f"the input topics already hold records ({sum(ends.values())}): "
                             "the benchmark needs a fresh broker (unset ATS_BROKER_URL to use an embedded one)")
    finally:
        await consumer.stop()


async def plain_read(rig: Rig, topic_names: tuple[str, ...], messages: int) -> tuple[int, float]:
    """The ceiling: no group, every partition assigned from the beginning, ``getmany`` + ``orjson.loads``
    of every message; returns (lines, seconds) from the first fetch to the last message."""
    consumer = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=25,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in topic_names for p in range(rig.settings.partitions)])
        await consumer.seek_to_beginning()
        seen = lines = 0
        started = time.perf_counter()
        while seen < messages:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=100_000)).values():
                for record in records:
                    body = orjson.loads(record.value)  # type: ignore[arg-type]
                    lines += len(body["lines"])
                seen += len(records)
        return lines, time.perf_counter() - started
    finally:
        await consumer.stop()


async def changelog_records(rig: Rig, idle_ms: int = 1500) -> tuple[int, int]:
    """(state records, flush markers) the worker wrote to its changelog, read to the end (until idle: the
    embedded broker's listed end offsets stop short of a multi-record batch)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=rig.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=25)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.CHANGELOG_TOPIC, p) for p in range(rig.settings.partitions)])
        await consumer.seek_to_beginning()
        records = markers = 0
        while batches := await consumer.getmany(timeout_ms=idle_ms, max_records=100_000):
            for batch in batches.values():
                records += len(batch)
                markers += sum(1 for record in batch if (record.key or b"").startswith(b"m|"))
        return records, markers
    finally:
        await consumer.stop()


@dataclass
class EngineRun:
    started: float  # monotonic: the worker process spawned
    first_applied: float  # the first position of the workload seen in the cache
    done: float  # every sentinel seen in the cache
    checked: dict[str, tuple[int, int]]  # sku → (expected, cached) Σ on_hand
    pid: int
    cpu_s: float | None = None  # the worker's CPU seconds from the first applied to the final answer

    @property
    def total_s(self) -> float:
        return self.done - self.started

    @property
    def applying_s(self) -> float:
        return self.done - self.first_applied


def spawn_worker(rig: Rig, name: str = "worker", store: str = "rocksdb") -> subprocess.Popen[bytes]:
    """One ``python -m streams worker`` (RocksDB store unless told) on the rig, data in ``rig.root / name``
    (made here), log appended to ``rig.root / f"{name}.log"``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_BROKER_URL=rig.settings.broker_url or "", ATS_REDIS_URL=rig.settings.redis_url or "",
               ATS_PARTITIONS=str(rig.settings.partitions), ATS_DATA_DIR=str(rig.root / name),
               ATS_STORE=store, ATS_LOG_LEVEL="info",
               # as `ats up` runs the embedded broker: a short session keeps the group join to seconds
               ATS_SESSION_TIMEOUT_SECONDS="3", ATS_HEARTBEAT_INTERVAL_SECONDS="0.5")
    env.update(tuning())
    (rig.root / name).mkdir(exist_ok=True)
    with (rig.root / f"{name}.log").open("ab") as log:
        return embedded.child_process([sys.executable, "-m", "streams", "worker"], log=log, env=env)


def run_engine(rig: Rig, workload: Workload, *, profile: Path | None = None, timeout: float = 900) -> EngineRun:
    """Start one ``python -m streams worker`` (default RocksDB store) and time it through the cache."""
    spy_bin = Path(sys.executable).parent / "py-spy"
    if profile is not None and not spy_bin.exists():
        raise SystemExit(f"--profile needs py-spy: {Path(sys.executable).parent / 'pip'} install py-spy")
    started = time.monotonic()
    worker = spawn_worker(rig)
    spies: list[subprocess.Popen[bytes]] = []
    cpu_at_first: list[float | None] = []

    def attach() -> None:  # py-spy from the first applied event on: the profile of consumption alone
        cpu_at_first.append(cpu_seconds(worker.pid))
        if profile is not None:
            spies.append(subprocess.Popen(
                [str(spy_bin), "record", "--pid", str(worker.pid), "--rate", "100",
                 "--format", "raw", "-o", str(profile), "--nonblocking", "--gil"],  # CPU, not waits
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        first, done, checked = asyncio.run(watch(rig, workload, worker, time.monotonic() + timeout, attach))
        cpu_at_done = cpu_seconds(worker.pid)
    except BaseException:
        sys.stderr.write((rig.root / "worker.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        embedded.stop_process(worker, timeout=20)
    cpu = None if None in (cpu_at_done, *cpu_at_first) else cpu_at_done - cpu_at_first[0]  # type: ignore[operator]
    return EngineRun(started, first, done, checked, worker.pid, cpu)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used (Linux ``/proc``; None elsewhere). On a shared machine
    the CPU a run takes varies far less than the time it takes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch(rig: Rig, workload: Workload, worker: subprocess.Popen[bytes], deadline: float,
                on_first: Callable[[], None]) -> tuple[float, float, dict[str, tuple[int, int]]]:
    """(first workload position in the cache, every sentinel in the cache, Σ on_hand checked per sampled SKU)."""
    cache = Redis.from_url(rig.settings.redis_url or "")
    try:
        popular = [topics.position_key(sku) for sku in list(workload.sample())[:20]]
        first = await _until(lambda: cache.exists(*popular), worker, deadline, "the first position")
        on_first()
        pending = {(topics.position_key(sku), location) for _, _, sku, location in workload.sentinels}
        async def sentinels_seen() -> bool:
            for key, location in list(pending):
                if await cache.hexists(key, location):
                    pending.discard((key, location))
            return not pending
        done = await _until(sentinels_seen, worker, deadline, "every sentinel")
        checked = {}
        for sku, expected in workload.sample().items():
            cached = sum(orjson.loads(v)[0] for v in (await cache.hgetall(topics.position_key(sku))).values())
            checked[sku] = (expected, cached)
        return first, done, checked
    finally:
        await cache.aclose()


async def _until(check: Any, worker: subprocess.Popen[bytes], deadline: float, what: str) -> float:
    while not await check():
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}) before {what} reached the cache")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not reach the cache in time")
        await asyncio.sleep(POLL_S)
    return time.monotonic()


def verify(run: EngineRun) -> None:
    wrong = {sku: pair for sku, pair in run.checked.items() if pair[0] != pair[1]}
    if wrong:
        raise SystemExit(f"the engine's final state does not match the workload: (expected, cached) {wrong}")


def machine() -> dict[str, Any]:
    return {"nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def write_result(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), "figures": figures}, indent=2) + "\n")
    return path


def start_up(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    """``ats up`` (embedded broker and cache unless ``env`` names them) on a free API port, once ready:
    the process, the API's URL and its dev token."""
    port = embedded.free_port()
    up = subprocess.Popen([sys.executable, "-m", "streams", "up"], env={**env, "ATS_API_PORT": str(port)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    token = ""
    assert up.stdout is not None
    for line in up.stdout:
        if found := re.search(r"dev token\s+(\S+)", line):
            token = found.group(1)
        if "ready;" in line:
            return up, f"http://127.0.0.1:{port}", token
    raise RuntimeError(f"ats up stopped before it was ready (exit {up.wait()})")


def print_state_figures(figures: dict[str, Any], per: str) -> None:
    """The lines every ingest benchmark ends its report with: changelog records, the check, the tuning."""
    print(f"  changelog: {figures['changelog_records']:,} records in {figures['flushes']:,} partition "
          f"flushes (markers), {figures['changelog_records'] / figures[per]:.3f} per line")
    print(f"  final state checked: Σ on_hand of {figures['checked_skus']} SKUs as the workload's arithmetic")
    print_tuning(figures)


def print_tuning(figures: dict[str, Any]) -> None:
    if figures.get("worker_tuning"):
        print(f"  worker settings varied: {figures['worker_tuning']}")


def script(name: str, run: Callable[[list[str] | None], dict[str, Any]], argv: list[str] | None = None) -> None:
    """A benchmark run alone (``python -m benchmarks.<name>``): measure, print, write ``<name>-….json``."""
    print(f"  written to {write_result(name, run(argv))}")
