"""One simulation run against a running product: seed, load, drain, check, report.

Phases, in order:

1. **seed**: policies, DC stock and each store's opening count, then one sentinel per input partition;
   the load starts when every sentinel is in the cache (the opening stock is applied);
2. **load** for ``duration_s``: every 50 ms the events due (:class:`~simulation.day.Day`) are produced;
   holds, releases and reads go to the API at their target rates; a freshness probe (a one-unit receipt)
   every ``probe_interval_s`` and a poller that sees it in the API; every second the workers' heartbeats
   (consumer lag) and the snapshots they publish (resident memory, error log records) are sampled;
3. **drain**: the tills come back, the trucks unload, then a sentinel per input partition stamped past the
   last ERP window; the load is applied when every sentinel is in the cache;
4. **check** (:mod:`simulation.checks`): every position against the simulator's arithmetic, through the API;
   oversells; the ERP postings of the day.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import orjson

from availability import topics
from availability.routing import location_on
from cacheclient import Cache, connect_url
from cacheclient.tasks import stop

from . import catalog, checks
from .day import Day, HoldRequest, Produce, Release, stamp
from .metrics import Metrics
from .traffic import Api, Committed, Sink, Target

SLICE_S = 0.05
CATCH_UP_S = 1.0
TASKS_GRACE_S = 60.0
#: the longest one call to the cache may take
CACHE_TIMEOUT_S = 10.0
SENTINEL_TOPICS = (topics.SALES, topics.RETURNS, topics.RECEIPTS, topics.TRANSFERS, topics.ADJUSTMENTS,
                   topics.POLICIES)
CONCURRENCY = 64
PROBE_SKU = "PROBE-FRESHNESS"


class Run:
    def __init__(self, target: Target, day: Day, *, sink: Sink, seed: int,
                 on_progress: Callable[[str, float, dict[str, Any]], None] | None = None,
                 drain_timeout_s: float = 600) -> None:
        self.target = target
        self.day = day
        self.profile = day.profile
        self.sink = sink
        self.rng = random.Random(seed + 1)  # reads: their own stream, so the day's draws do not depend on them
        self.metrics = Metrics()
        self.on_progress = on_progress or (lambda phase, done, stats: None)
        self.drain_timeout_s = drain_timeout_s
        self.started = 0.0
        self.tasks: set[asyncio.Task[Any]] = set()  # holds, releases, reads: the drain waits for them
        self.background: set[asyncio.Task[Any]] = set()  # the loops, cancelled at the end
        self.hold_slots = 0
        self.in_flight = {"reads": 0, "holds": 0}
        self.cache: Cache | None = None
        self.committed: Committed
        self.api: Api | None = None
        self.timings: dict[str, float] = {}
        self.probe_location = f"{day.tag}-probe"
        self.probes: list[float] = []  # send time of probe k+1 (run time)
        self.probes_seen = 0
        self._stop = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.started

    # ---- the run --------------------------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        # bounded: a call the cache never answers fails the run with a reason instead of stalling it
        self.cache = connect_url(self.target.redis_url, cluster=self.target.redis_cluster,
                                 socket_timeout=CACHE_TIMEOUT_S, socket_connect_timeout=CACHE_TIMEOUT_S)
        self.api = Api(self.target.api_url, self.target.token)
        self.committed = Committed(self.target.bootstrap, topics.APP_ID)  # Faust's group id is the app id
        await self.sink.start()
        await self.committed.start()
        try:
            clock = time.monotonic()
            await self._seed()
            self.timings["seed_s"] = round(time.monotonic() - clock, 2)
            self.started = time.monotonic()
            await self._load()
            self.timings["load_s"] = round(self.now(), 2)
            drain = await self._drain()
            return await checks.check(self, drain)
        finally:
            await stop(self.tasks | self.background, raise_errors=False)
            await self.sink.stop()
            await self.api.close()
            await self.cache.aclose()
            await self.committed.stop()

    async def _seed(self) -> None:
        seeds = self.day.seed() + self.day.open_stores()
        self.on_progress("seeding", 0.0, {"lines": sum(p.lines for p in seeds)})
        for produce in seeds:
            await self.sink.send(produce.topic, produce.key, produce.event)
        sentinels = await self._sentinels("seed", self.day.start_ms - 1000)
        applied, missing = await self._until_applied(sentinels, "seeding", within_s=self.drain_timeout_s)
        if applied is None:
            raise RuntimeError("the opening stock was not applied in time: is a worker running? Not in the cache: "
                               + ", ".join(missing))

    async def _load(self) -> None:
        duration = self.profile.duration_s
        for task in (self._reads(), self._probe(), self._poll_probe(), self._sample()):
            self._spawn(task, self.background)
        target_lines = target_holds = last = 0.0
        tick = 0
        while (now := self.now()) < duration:
            tick += 1
            # the targets follow the wall clock: a slice that comes late owes the time it missed, but at most
            # a second of it (a producer that cannot keep up falls short, visibly, instead of producing the
            # rest of the day long after the load's end)
            rate, elapsed, last = self.profile.rate(now / duration), now - last, now
            target_lines = min(target_lines + self.profile.lines_per_s * rate * elapsed,
                               self.day.lines_emitted + self.profile.lines_per_s * rate * CATCH_UP_S)
            target_holds += self.profile.holds_per_s * rate * elapsed
            for item in self.day.advance(now, int(target_lines)):
                await self._dispatch(item)
            due = int(target_holds) - self.hold_slots
            if due > 0:
                self.hold_slots += due
                free = CONCURRENCY - self.in_flight["holds"]
                self.metrics.holds_skipped += max(0, due - free)
                for request in self.day.holds(min(due, free), now):
                    self._spawn(self._hold(request))
            await asyncio.sleep(max(0.0, tick * SLICE_S - self.now()))
        self._stop.set()

    async def _dispatch(self, item: Produce | Release) -> None:
        if isinstance(item, Release):
            self._spawn(self._release(item.reservation_id))
            return
        await self.sink.send(item.topic, item.key, item.event)
        self.metrics.produced(self.now(), item.lines)

    def _spawn(self, coroutine: Any, into: set[asyncio.Task[Any]] | None = None) -> None:
        tasks = self.tasks if into is None else into
        task = asyncio.get_running_loop().create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ---- holds and releases ---------------------------------------------------------------------
    async def _hold(self, request: HoldRequest) -> None:
        assert self.api is not None
        self.in_flight["holds"] += 1
        try:
            status, body, ms = await self.api.hold(request.reservation_id, request.location_id, request.lines,
                                                   request.ttl_seconds)
            self.metrics.hold(self.now(), ms, status)
            if status in (503, 504, 599):  # perhaps produced, decided later: ask for it
                status, body = await self._decision(request.reservation_id)
        except asyncio.CancelledError:  # the drain gave up on it: whether it is held cannot be known
            self.day.decided(request.reservation_id, "unknown", self.now())
            raise
        finally:
            self.in_flight["holds"] -= 1
        if 400 <= status < 500 and status != 409:  # refused by the API: nothing was produced
            self.day.decided(request.reservation_id, "refused", self.now())
            return
        self._decided(request.reservation_id, body if status in (201, 409, 200) else None)

    async def _decision(self, reservation_id: str, within_s: float = 20.0) -> tuple[int, Any]:
        assert self.api is not None
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            status, body, _ = await self.api.reservation(reservation_id)
            if status == 200:
                return status, body
        return 504, None

    def _decided(self, reservation_id: str, body: dict[str, Any] | None) -> None:
        now = self.now()
        if body is None:
            self.day.decided(reservation_id, "unknown", now)
        elif body.get("status") == "rejected":
            self.day.decided(reservation_id, "rejected", now)
        else:
            expires = body.get("expires_at")
            self.day.decided(reservation_id, "held", now, self._run_time(expires) if expires else None)

    def _run_time(self, rfc3339: str) -> float:
        epoch = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
        return epoch - time.time() + self.now()

    async def _release(self, reservation_id: str) -> None:
        assert self.api is not None
        self.day.releasing(reservation_id, self.now())
        try:
            status, body, ms = await self.api.release(reservation_id)
        except asyncio.CancelledError:
            self.day.released(reservation_id, "unknown")
            raise
        self.metrics.releases.append(ms)
        self.day.released(reservation_id, body.get("status", "unknown") if status == 200 and body else "unknown")

    # ---- reads, probes, lag -----------------------------------------------------------------------
    async def _reads(self) -> None:
        """Availability reads at ``read_rps`` (x the spike), open loop: a read that finds every connection
        busy is counted as skipped, not queued."""
        due = 0.0
        last = self.now()
        while not self._stop.is_set():
            await asyncio.sleep(0.01)
            now = self.now()
            due += self.profile.read_rps * self.profile.spike(now / self.profile.duration_s) * (now - last)
            last = now
            while due >= 1:
                due -= 1
                if self.in_flight["reads"] >= CONCURRENCY:
                    self.metrics.reads_skipped += 1
                    continue
                self._spawn(self._read(catalog.sku(self.day.zipf.draw(self.rng))))

    async def _read(self, sku: str) -> None:
        assert self.api is not None
        self.in_flight["reads"] += 1
        try:
            status, _, ms = await self.api.availability(sku)
        finally:
            self.in_flight["reads"] -= 1
        self.metrics.read(self.now(), ms, status)

    async def _probe(self) -> None:
        """A one-unit receipt at the probe location every ``probe_interval_s``: its freshness is the time until
        the API shows it (:meth:`_poll_probe`)."""
        while not self._stop.is_set():
            at = self.day.business_ms(self.now())
            self.probes.append(self.now())
            await self.sink.send(topics.RECEIPTS, self.probe_location, {
                "event_id": f"{self.day.tag}-probe-{len(self.probes)}", "type": "receipt", "occurred_at": stamp(at),
                "location_id": self.probe_location, "lines": [{"sku": PROBE_SKU, "qty": 1}]})
            self.metrics.probes_sent += 1
            await asyncio.sleep(self.profile.probe_interval_s)

    async def _poll_probe(self) -> None:
        assert self.api is not None
        while not self._stop.is_set() or self.probes_seen < len(self.probes):
            status, body, _ = await self.api.availability(PROBE_SKU, (self.probe_location,))
            now = self.now()
            if status == 200 and body and body["locations"]:
                on_hand = body["locations"][0]["on_hand"]
                while self.probes_seen < min(on_hand, len(self.probes)):
                    self.metrics.fresh(now, (now - self.probes[self.probes_seen]) * 1000)
                    self.probes_seen += 1
            await asyncio.sleep(0.02)

    async def _sample(self) -> None:
        """Every second: consumer lag (what this run produced beyond the engine group's commits, and what
        the workers' heartbeats say), and the live figures."""
        while True:
            await asyncio.sleep(1.0)
            lag = await self.lag()
            now = self.now()
            if lag is not None:
                self.metrics.lagged(now, lag)
            if (beats := await self.heartbeat_lag()) is not None:
                self.metrics.heartbeat_lag.append((round(now, 2), beats))
            for worker, (rss_bytes, error_logs) in (await self.worker_processes()).items():
                self.metrics.worker(now, worker, rss_bytes, error_logs)
            self.on_progress("load" if not self._stop.is_set() else "drain",
                             min(1.0, now / self.profile.duration_s), self.live_stats(now, lag))

    async def lag(self) -> int | None:
        """Records this run produced that the engine's group has not committed (None: no answer)."""
        try:
            return await asyncio.wait_for(self.committed.lag(self.sink.ends), 5.0)
        except (TimeoutError, OSError):  # a sample missed, not a run lost
            return None

    async def heartbeat_lag(self) -> int | None:
        """Σ records behind over the workers whose heartbeat is fresh (None: no heartbeat). A worker knows
        the high watermarks only as far as it has fetched: an overloaded one under-reports."""
        total, fresh = 0, False
        async for _, beat in self._published(topics.HEARTBEAT_PREFIX):
            if time.time() - beat.get("at", 0) <= 10:
                total += int(beat.get("lag", 0))
                fresh = True
        return total if fresh else None

    async def worker_processes(self) -> dict[str, tuple[int | None, int]]:
        """(RSS bytes, error log records so far) of each worker, from the snapshot it publishes every tick
        (:mod:`streams.metrics`); a worker of a version that does not publish them is left out."""
        out = {}
        async for worker, snapshot in self._published(topics.WORKER_STATS_PREFIX):
            if process := snapshot.get("process"):
                out[worker] = (process.get("rss_bytes"), int(process.get("error_logs", 0)))
        return out

    async def _published(self, prefix: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(worker, value)`` of each key the workers publish under ``prefix`` (gone ones skipped)."""
        assert self.cache is not None
        async for key in self.cache.scan_iter(match=prefix + "*", count=100):
            raw = await self.cache.get(key)
            if raw:
                yield (key.decode() if isinstance(key, bytes) else key).removeprefix(prefix), orjson.loads(raw)

    def live_stats(self, now: float, lag: int | None) -> dict[str, Any]:
        second = self.metrics.seconds.get(int(now) - 1)
        return {
            "target": round(self.profile.lines_per_s * self.profile.rate(min(1.0, max(0.0, now - 1)
                                                                             / self.profile.duration_s))),
            "lines": second.lines if second else 0,
            "lag": lag, "reads": len(second.reads) if second else 0, "holds": len(second.holds) if second else 0,
            "read_p99": _p(second.reads if second else [], 0.99), "hold_p99": _p(second.holds if second else [], 0.99),
            "fresh": _p(second.freshness if second else [], 0.5),
        }

    def oldest_unseen_ms(self) -> float | None:
        if self.probes_seen >= len(self.probes):
            return None
        return round((self.now() - self.probes[self.probes_seen]) * 1000, 1)

    # ---- drain ------------------------------------------------------------------------------------
    async def _drain(self) -> dict[str, Any]:
        """Tills and trucks finish, then the sentinels, stamped past the last ERP window plus its grace."""
        ended = self.now()
        for item in self.day.close(ended):
            await self._dispatch(item)
        if self.tasks:  # holds, releases and reads still in flight: a minute at most
            await asyncio.wait(set(self.tasks), timeout=TASKS_GRACE_S)
            await stop(set(self.tasks), raise_errors=False)
        day_end_ms = self.day.business_ms(ended)
        after_ms = day_end_ms + (self.target.erp_window_s + self.target.erp_grace_s + 1) * 1000
        sentinels = await self._sentinels("end", after_ms)
        self.on_progress("drain", 1.0, self.live_stats(self.now(), await self.lag()))
        applied, missing = await self._until_applied(sentinels, "drain", within_s=self.drain_timeout_s)
        return {"load_ended_s": round(ended, 2), "applied_s": None if applied is None else round(applied, 2),
                "drained": applied is not None, "day_end_ms": day_end_ms,
                "sentinels_not_applied": missing}

    async def _sentinels(self, name: str, at_ms: int) -> list[tuple[str, str]]:
        """One event per (input topic, partition), produced to that partition: when each is in the cache,
        everything produced before it on its partition has been applied. Returns (sku, location) pairs."""
        out = []
        for topic in SENTINEL_TOPICS:
            for partition in range(self.target.partitions):
                location = location_on(partition, self.target.partitions, f"{self.day.tag}-{name}-sentinel")
                sku = f"SENTINEL-{name}-{topic.rsplit('.', 1)[1]}-{partition}"
                await self.sink.send(topic, location, sentinel(topic, sku, location, at_ms, self.day.tag),
                                     partition=partition)
                out.append((sku, location))
                if topic == topics.TRANSFERS:  # its second leg, re-routed to the destination's owner
                    out.append((sku, f"{location}-to"))
        await self.sink.settle()
        return out

    async def _until_applied(self, sentinels: list[tuple[str, str]], phase: str, *, within_s: float,
                             ) -> tuple[float | None, list[str]]:
        """Run time when every sentinel was in the cache (or None after ``within_s``), and those not in the
        cache then as ``sku@location``: the partitions the engine had not caught up on."""
        assert self.cache is not None
        pending = set(sentinels)
        deadline = time.monotonic() + within_s
        beat = 0.0
        while pending and time.monotonic() < deadline:
            pipe = self.cache.pipeline(transaction=False)
            ordered = sorted(pending)
            for sku, location in ordered:
                pipe.hexists(topics.position_key(sku), location)
            for found, entry in zip(await pipe.execute(), ordered, strict=True):
                if found:
                    pending.discard(entry)
            if time.monotonic() - beat > 1 and phase == "seeding":
                beat = time.monotonic()
                self.on_progress(phase, 1 - len(pending) / len(sentinels), {"lag": await self.lag()})
            await asyncio.sleep(0.05)
        return (None if pending else self.now()), [f"{sku}@{location}" for sku, location in sorted(pending)]


def sentinel(topic: str, sku: str, location: str, at_ms: int, tag: str) -> dict[str, Any]:
    """A one-unit event of the topic's type (a transfer's second leg goes through the re-routing lane)."""
    kind = topics.INPUT_TOPICS[topic]
    body: dict[str, Any] = {"event_id": f"{tag}-{sku}", "type": kind, "occurred_at": stamp(at_ms)}
    if kind == "transfer":
        return {**body, "transfer_id": f"{tag}-{sku}", "status": "shipped", "from_location_id": location,
                "to_location_id": f"{location}-to", "lines": [{"sku": sku, "qty": 1}]}
    if kind == "adjustment":
        return {**body, "location_id": location, "mode": "delta", "lines": [{"sku": sku, "qty": 1}]}
    if kind == "policy":
        return {**body, "location_id": location, "lines": [{"sku": sku, "safety_stock": 1}]}
    return {**body, "location_id": location, "lines": [{"sku": sku, "qty": 1}]}


def _p(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 1)

