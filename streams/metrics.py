"""The worker's metrics: counted per batch, exposed on ``/metrics`` (``ATS_WORKER_METRICS_PORT``) and
published to the cache for the console.

The engine calls two things, once per batch: :meth:`WorkerMetrics.cache_write` around its pipelined cache
write (errors, duration, and the time the batch reached the cache) and :meth:`WorkerMetrics.batch` at the
end of the flush. Everything is counted in plain integers (:class:`availability.opstats.WorkerTotals`) and
turned into Prometheus families only when scraped; names, types and help come from the one catalogue,
:mod:`availability.metrics`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from availability import metrics as catalogue
from availability import topics
from availability.opstats import BucketCounts, WorkerTotals
from availability.settings import Settings
from cacheclient import CacheErrors

if TYPE_CHECKING:
    import faust

    from availability.model import Position
    from availability.shard import Flush

    from .engine import Engine

log = logging.getLogger(__name__)

APPLIED, DEAD_LETTER = "applied", "dead_letter"
#: how long a published snapshot outlives its worker (the API shows only fresh ones)
STATS_TTL_SECONDS = 30


#: event timestamps kept for the freshness of the next cache write (writes are at most 250 ms apart while
#: behind; this only bounds the list when no write comes at all)
_UNWRITTEN_MAX = 100_000


class WorkerMetrics:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.totals = WorkerTotals(catalogue.FRESHNESS_BUCKETS, catalogue.LATENESS_BUCKETS)
        self.cache_write_duration = BucketCounts(catalogue.DURATION_BUCKETS)
        self.batch_duration = BucketCounts(catalogue.DURATION_BUCKETS)
        self.batch_size = BucketCounts(catalogue.BATCH_SIZE_BUCKETS)
        self.lateness = self.totals.lateness  # observed by the engine as it validates an event
        #: per partition: positions (sku, location) with on_hand < 0, and with reserved > on_hand
        self.negative: dict[int, set[tuple[str, str]]] = {}
        self.at_risk: dict[int, set[tuple[str, str]]] = {}
        self._written_at: float | None = None
        self._unwritten: list[float] = []  # timestamps of events applied whose positions no cache write carried yet
        self.engine: Engine | None = None
        self._publish_failing = False
        self._runner: web.AppRunner | None = None

    # ---- what the engine calls ------------------------------------------------------------------
    @contextmanager
    def cache_write(self) -> Iterator[None]:
        """Around one pipelined cache write: counts a failure (and re-raises it), times a success."""
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.totals.cache_write_errors += 1
            self._unwritten.clear()  # their freshness is unknown: the write that would have carried them failed
            raise
        self.cache_write_duration.observe(time.perf_counter() - started)
        self._written_at = self.clock()

    def batch(self, records: Iterable[Any], dead_letters: list[tuple[bytes, bytes]],
              flushes: Mapping[int, Flush], snapshots: Mapping[int, list[tuple[str, str, Position]]],
              seconds: float) -> None:
        """One batch: ``records`` the input records it took in (Kafka's, timestamps in milliseconds),
        ``dead_letters`` the records it produced to the dead-letter topic (keyed ``topic:partition:offset``
        of their origin), ``flushes`` the state flushes it ended with (none between flush intervals),
        ``snapshots`` the positions it wrote to the cache."""
        totals = self.totals
        dead = set()
        for key, value in dead_letters:
            totals.dead_letters[orjson.loads(value)["reason"]] += 1
            dead.add(key)
        written, size = self._written_at, 0
        for record in records:
            size += 1
            kind = topics.INPUT_TOPICS.get(record.topic)
            if kind is None:  # re-routed legs and clock ticks: counted where they were first taken in
                continue
            refused = dead and f"{record.topic}:{record.partition}:{record.offset}".encode() in dead
            totals.events[(kind, DEAD_LETTER if refused else APPLIED)] += 1
            if record.timestamp and len(self._unwritten) < _UNWRITTEN_MAX:
                self._unwritten.append(record.timestamp / 1000)
        if written is not None:  # a batch that did not write the cache (behind) leaves them to the next write
            for stamp in self._unwritten:
                totals.freshness.observe(max(0.0, written - stamp))
            self._unwritten.clear()
        for partition, flush in flushes.items():
            self._flushed(flush)
            self._positions(partition, flush.cache)
        for partition, changed in snapshots.items():
            self._positions(partition, changed)
        self.batch_duration.observe(seconds)
        self.batch_size.observe(size)
        self._written_at = None

    def _flushed(self, flush: Flush) -> None:
        totals = self.totals
        for hold in flush.decisions:
            totals.holds[hold.status] += 1
        for posting in flush.postings:
            totals.postings[posting.movement_type] += 1
            totals.posted_units[posting.movement_type] += abs(posting.qty)
        for change in flush.changes:
            totals.changes[change.kind] += 1

    def _positions(self, partition: int, changed: list[tuple[str, str, Position]]) -> None:
        negative = self.negative.setdefault(partition, set())
        at_risk = self.at_risk.setdefault(partition, set())
        for sku, location_id, position in changed:
            where = (sku, location_id)
            if position.on_hand < 0:
                negative.add(where)
            else:
                negative.discard(where)
            if position.reserved > max(position.on_hand, 0):  # live holds the stock cannot cover
                at_risk.add(where)
            else:
                at_risk.discard(where)

    # ---- reading ---------------------------------------------------------------------------------
    def _owned(self) -> set[int]:
        return set(self.engine.states) if self.engine is not None else set()

    def _lags(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): lag for tp, lag in self.engine.lags().items()} if self.engine else {}

    def position_gauges(self) -> tuple[int, int]:
        """(negative on-hand, reserved above on-hand) over the partitions this worker holds now."""
        owned = self._owned()
        return (sum(len(s) for p, s in self.negative.items() if p in owned),
                sum(len(s) for p, s in self.at_risk.items() if p in owned))

    def snapshot(self) -> dict[str, Any]:
        negative, at_risk = self.position_gauges()
        lag = {f"{topic}/{partition}": behind for (topic, partition), behind in sorted(self._lags().items())}
        worker = self.engine.worker_id if self.engine is not None else "unattached"
        return self.totals.snapshot(worker=worker, at=self.clock(), partitions=self._owned(), lag=lag,
                                    negative_on_hand=negative, reserved_above_on_hand=at_risk,
                                    rss_bytes=resident_bytes())

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families, built at scrape time from the running totals."""
        totals = self.totals
        yield _counter(catalogue.WORKER_EVENTS, {key: float(n) for key, n in totals.events.items()})
        yield _counter(catalogue.WORKER_DEAD_LETTERS, _keyed(totals.dead_letters))
        yield _counter(catalogue.WORKER_HOLD_DECISIONS, _keyed(totals.holds))
        yield _counter(catalogue.WORKER_ERP_POSTINGS, _keyed(totals.postings))
        yield _counter(catalogue.WORKER_FEED_CHANGES, _keyed(totals.changes))
        yield _counter(catalogue.WORKER_ERP_UNITS, _keyed(totals.posted_units))
        yield _counter(catalogue.WORKER_CACHE_WRITE_ERRORS, {(): float(totals.cache_write_errors)})
        yield _counter(catalogue.WORKER_ERROR_LOGS, {(): float(totals.error_logs)})
        lag = _gauge(catalogue.WORKER_CONSUMER_LAG)
        for (topic, partition), behind in sorted(self._lags().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        owned = self._owned()
        negative, at_risk = self.position_gauges()
        states = self.engine.states if self.engine is not None else {}
        positions = sum(len(bucket.positions) for state in states.values() for bucket in state.buckets.values())
        silent = self.engine.clocks.silent(int(self.clock() * 1000), owned) if self.engine is not None else 0
        for metric, value in ((catalogue.WORKER_PARTITIONS, len(owned)), (catalogue.WORKER_NEGATIVE_ON_HAND, negative),
                              (catalogue.WORKER_RSS, resident_bytes() or 0),
                              (catalogue.WORKER_RESERVED_ABOVE_ON_HAND, at_risk),
                              (catalogue.WORKER_POSITIONS, positions), (catalogue.WORKER_SILENT_LOCATIONS, silent)):
            gauge = _gauge(metric)
            gauge.add_metric([], value)
            yield gauge
        for metric, counts in ((catalogue.WORKER_FRESHNESS, totals.freshness),
                               (catalogue.WORKER_CACHE_WRITE_DURATION, self.cache_write_duration),
                               (catalogue.WORKER_BATCH_DURATION, self.batch_duration),
                               (catalogue.WORKER_BATCH_SIZE, self.batch_size),
                               (catalogue.WORKER_LATENESS, self.lateness)):
            yield _histogram(metric, counts)

    def count_errors(self, logger: logging.Logger) -> None:
        """Count every record ``logger`` (the root logger: all of them) sees at ERROR or above, for
        ``ats_worker_error_logs_total`` and the published snapshot (a soak checks there were none)."""
        logger.addHandler(_ErrorCounter(self.totals))

    # ---- serving ---------------------------------------------------------------------------------
    def attach(self, app: faust.App, engine: Engine) -> None:
        """Serve ``/metrics`` while the app runs, and publish a snapshot to the cache every tick."""
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # a collector: anything with collect()
        app.task(self._serve)
        app.timer(self.settings.tick_interval_ms / 1000, name="metrics")(self.publish)
        app.on_before_shutdown.connect(self._stop)  # type: ignore[arg-type]

    async def publish(self) -> None:
        """The totals for the console. A cache that does not answer skips a snapshot, never the worker:
        the engine's own cache writes fail (and are counted) in the same outage."""
        if self.engine is None:
            return
        body = orjson.dumps(self.snapshot())
        try:
            await self.engine.cache.set(topics.worker_stats_key(self.engine.worker_id), body, ex=STATS_TTL_SECONDS)
        except CacheErrors as exc:
            if not self._publish_failing:  # once per outage, not every tick
                log.warning("worker stats not published: the cache does not answer: %s", exc)
            self._publish_failing = True
            return
        self._publish_failing = False

    async def _serve(self) -> None:
        port = self.settings.worker_metrics_port
        if not port:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.worker_metrics_host, port).start()
        except OSError as exc:  # a port clash must not stop the processing of inventory
            log.error("ATS_WORKER_METRICS_PORT=%d: cannot serve /metrics: %s", port, exc)
            await runner.cleanup()
            return
        self._runner = runner
        log.info("worker metrics on http://%s:%d/metrics", self.settings.worker_metrics_host, port)

    async def _handler(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _stop(self, sender: Any, **kwargs: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _keyed(counter: Mapping[str, int]) -> dict[tuple[str, ...], float]:
    return {(label,): float(count) for label, count in counter.items()}


def _counter(metric: catalogue.Metric, values: Mapping[tuple[str, ...], float]) -> CounterMetricFamily:
    family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def _gauge(metric: catalogue.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)


def _histogram(metric: catalogue.Metric, counts: BucketCounts) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
    buckets = [("+Inf" if bound == float("inf") else repr(bound), float(n)) for bound, n in counts.cumulative()]
    family.add_metric([], buckets, counts.total)
    return family


class _ErrorCounter(logging.Handler):
    def __init__(self, totals: WorkerTotals) -> None:
        super().__init__(logging.ERROR)
        self.totals = totals

    def emit(self, record: logging.LogRecord) -> None:
        self.totals.error_logs += 1


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory (RSS) now, from ``/proc/self/statm``; None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None
