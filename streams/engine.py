"""The engine agent: reads every input topic in batches as fetched (:mod:`streams.intake`), applies them to
per-partition state in the domain (:class:`availability.shard.PartitionState`), writes the cache every
batch and flushes the state every ``ATS_FLUSH_INTERVAL_MS``.

Every batch, in this order:

1. **apply** every event in memory, in offset order per input partition from the offset the state
   expects next (:mod:`streams.gate`): validate, re-route legs owned by another partition, dead-letter
   what cannot be applied, decide holds;
2. **outputs**: produce the re-routed legs and dead letters, and wait for delivery;
3. **cache**: write the snapshot of every position changed by the batch (one hash per SKU, pipelined),
   ahead of the changelog: an answer is fresh within a batch, not within a flush. Snapshots are
   idempotent: a replay after a crash writes the same values again.

Then a **flush** of each partition applied to since its last flush, once an ``ATS_FLUSH_INTERVAL_MS``,
the partitions' turns spread over the interval (:meth:`Engine._due`: one big flush of every partition
held the agent, and every answer due meanwhile, for the whole of it):

4. **changelog**: write each partition's state records (buckets, holds, ids), then its marker, and wait
   for delivery. The marker carries the next input offset of every input the state has consumed; a
   partition's records keep their order, so a stored marker vouches for the records before it.
   Recovery reads each changelog to its true end (:mod:`streams.logreader`), also on the embedded
   broker, whose listed end offsets stop short of a multi-record batch;
5. **decisions**: write the flush's reservation decisions to the cache, then publish them. Never
   earlier: a decision published before the changelog held the state that took it could be taken
   differently by the replay after a crash (inputs of different topics may interleave differently);
6. **postings**: send the ERP postings the flush closed to ``erp.movements`` and wait for delivery,
   then confirm them to the state (the next flush rewrites their buckets without them). A posting is
   sent only once the changelog holds it in its bucket's outbox: what was sent can never be decided
   differently by a replay; then, the same way, the **change feed**'s crossings the flush found, to
   ``inventory.availability`` keyed by SKU (:mod:`availability.feed`);
7. **commit** each input partition's next offset as the flushed state has it: the marker's, or past a
   clock tick that changed nothing (not worth a marker; a worker that loads the partition resumes at
   the marker whatever was committed). No input record is a Faust event to acknowledge: the records come
   as fetched, through :mod:`streams.intake`.

A batch that decided a reservation (a hold, a release, an expiry, a consuming sale) flushes the
partitions that decided at once (the others whose turn has come wait for a batch that decides nothing:
on a peak day a long wait, README "At peak, a flush holds the agent") and holds its step 3 back to step 5,
so the cache shows a decision's effect on positions together with the decision, never before it, and a
hold waits for no interval.

A crash between any two steps replays from the last stored marker: a restarted worker resumes each
input at the offset the recovered marker names (seeking there if Faust's committed offsets differ; a
gap that opens later is read from the log, see :mod:`streams.gate`, and so is the tail of an input that
stops delivering short of its end). What the cache showed of batches
not yet flushed is written again by the replay. The state records of a flush cut short carry the input
offsets they include and the event ids they applied, so the replay neither loses nor doubles. The
first flush of a loaded partition re-sends every posting and change record still in an outbox (a crash
between steps 4 and 6, or before a confirmation was written), at its steps 6, with its own among them:
the same ids with the same content, which the ERP and the feed's consumers take idempotently, and no
record of the partition is sent before them; and every position a watched channel sells from to
``ats.network`` (values: a summing partition takes them again harmlessly). Loading a partition
publishes again the decisions of the last two flushes it finds (a crash between steps 4 and 5 stored
them unpublished, and their replay is a duplicate that decides nothing).

A partition is loaded as soon as Faust has restored the table after an assignment, ahead of its first
event and one partition at a time (:mod:`streams.loads`); the load writes the partition's positions to
the cache whole (in slices) and marks its cache epoch before the state is handed to the agent, which
awaits the load of a partition it has events for. Until every assigned partition is loaded and written
whole, the worker's heartbeat does not say caught up (``/readyz`` answers 503), and only batches that
decided a reservation flush: the outboxes loaded partitions re-send would slow the loads readiness waits for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
import orjson
from aiokafka.errors import KafkaError
from faust.streams import _current_event
from faust.types import TP
from redis.exceptions import NoScriptError

import cacheclient
from availability import topics, wire
from availability.channels import ChannelViews, load_channels
from availability.events import epoch_ms
from availability.feed import Change, FeedRules, change_record, feed_rules
from availability.model import Position
from availability.netting import Posting
from availability.network import Entry, NetworkRules, entries_from_wire, network_records, network_rules
from availability.reservations import Hold
from availability.routing import legs
from availability.settings import Settings
from availability.shard import Flush, PartitionState, Source
from availability.silence import lateness_seconds
from availability.validation import EventRejected, Rejection, validate_event

from .app import intake_of
from .cacheepoch import CacheEpochs, CacheErrors
from .gate import InputGate, Verdict
from .intake import Slice
from .loads import Loads
from .logreader import LogReader, use_true_ends
from .metrics import WorkerMetrics
from .partitionload import read_state, whole_slices, write_whole
from .produce import BatchSender, Record
from .routing import Router, Tick, read_routed
from .silence import LocationClocks

log = logging.getLogger(__name__)

#: the flush interval is this many times ``ATS_FLUSH_INTERVAL_MS`` while the worker is behind (Engine._flush_interval):
#: 400k envelope lines ran at 11.3k lines/s flushing every second, 14.5k every five (benchmarks.ingest, same hour)
BEHIND_FLUSH_FACTOR = 5

#: the worker is behind (:meth:`Engine._behind`) while its inputs hold more records than this it has not
#: applied: at ~3k single events/s a third of a second of work, in 50-line envelopes about two seconds
BEHIND_RECORDS = 1_000

#: while the worker is behind, the cache is written at most this often, not after every batch: answers
#: are seconds old then anyway, and a hot SKU changed by ten batches is written once (decisions and
#: flushes still write at once)
BEHIND_CACHE_INTERVAL_SECONDS = 0.25

#: a batch flushes, beside the partitions whose reservation decisions wait for it, at most this many
#: partitions whose turn has come (Engine._due), those waiting longest first. Without a bound, a peak day's
#: partitions that decided no hold for a while waited for a batch that decided none, and flushed in it
#: together: 4-7 partitions, one batch holding the agent 5.5-10.9 s, holds due meanwhile answered 504
FLUSH_PARTITIONS_PER_BATCH = 2

#: a batch that holds the agent longer than this is logged, with where the time went: every answer due
#: meanwhile (hold decisions, the cache) waited for it
SLOW_BATCH_SECONDS = 2.0

#: a position's history list keeps this many entries beyond ``ATS_HISTORY_LIMIT``: room for the second
#: copies events applied again after a crash leave (the API shows one)
HISTORY_SLACK = 10

#: partition → (sku, location) → the history entries (JSON) to write, in the order applied (availability.history)
History = dict[int, Mapping[tuple[str, str], list[bytes]]]

#: every position of KEYS gets its new history entries: ARGV is ``keep, ttl`` and then, per key, its
#: entries (oldest first: the list is newest first) joined by newlines (JSON entries hold none); each list
#: is trimmed to ``keep + 1`` entries and kept ``ttl`` seconds. One call per partition and flush (its keys
#: share a hash slot, so Redis Cluster takes it too). Per position and batch, as LPUSH, LTRIM and EXPIRE,
#: ingest ran at a third of its speed without history (redis-py handles each command and argument in
#: Python); as one call per position, at half.
PUSH_HISTORY = """
local keep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local entries = {}
  for entry in string.gmatch(ARGV[i + 2], "[^\\n]+") do entries[#entries + 1] = entry end
  redis.call('LPUSH', key, unpack(entries))
  redis.call('LTRIM', key, 0, keep)
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""
#: positions per call at most
HISTORY_CALL_KEYS = 5_000
PUSH_HISTORY_SHA = hashlib.sha1(PUSH_HISTORY.encode(), usedforsecurity=False).hexdigest()  # as Redis names it

#: how long an input may deliver nothing while its log ends past what the state consumed before the
#: worker reads that tail from the log itself (see Engine._skipped_tails); while the worker is
#: behind, Faust's consumer holds back what it fetched of some inputs for longer than that as a matter of
#: course (its buffer is full of the others): then it waits TAIL_WAIT_BEHIND_SECONDS
TAIL_WAIT_SECONDS = 3.0
TAIL_WAIT_BEHIND_SECONDS = 30.0

#: the same for ``ats.network`` while the worker's other inputs are still being delivered: Faust's
#: fetches hand out its records behind the inputs' backlog (seconds late), and every tail read holds the
#: batch for a fetch round trip (16 reads of ats.network in one 200k-line ingest run, the rate fell by
#: half). Its records come once the backlog is through; a tail the consumer really skipped is still read
NETWORK_TAIL_WAIT_SECONDS = 30.0


def partition_state(settings: Settings, partition: int, *, feed: FeedRules | None = None,
                    network: NetworkRules | None = None) -> PartitionState:
    """An empty state of ``partition`` as the settings shape it (windows, horizons, history kept or not)."""
    return PartitionState(partition, horizon_ms=settings.count_horizon_seconds * 1000,
                          dedupe_window_ms=settings.dedupe_window_seconds * 1000,
                          window_ms=settings.erp_window_seconds * 1000, grace_ms=settings.erp_grace_seconds * 1000,
                          history=settings.history_limit > 0, feed=feed, network=network)


class Engine:
    def __init__(self, app: faust.App, settings: Settings, *, clock: Callable[[], float] = time.time,
                 metrics: WorkerMetrics | None = None, channels: ChannelViews | None = None) -> None:
        self.app = app
        self.settings = settings
        views = channels if channels is not None else load_channels(settings.channels_file)
        self.feed = feed_rules(views)
        self.network = network_rules(views)  # every channel's network ATS is watched (nothing without channels)
        self.clock = clock
        self.metrics = metrics or WorkerMetrics(settings)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.cache = cacheclient.connect(settings, socket_timeout=10.0)
        self.epochs = CacheEpochs(self.worker_id)  # a cache that lost positions is re-written whole
        self.states: dict[int, PartitionState] = {}
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.unflushed: set[int] = set()  # partitions applied to since their last flush
        self.intake = intake_of(app)  # the inputs' records, as fetched (streams.intake)
        self.started = time.monotonic()
        self.flushed_at: dict[int, float] = {}  # partition → when it last flushed (monotonic; never: started)
        self.cache_written_at = time.monotonic()
        self.history_script_known = False  # the cache was given PUSH_HISTORY (it forgets it on a restart)
        self.rebalances = 0  # revocations and assignments seen (a load spanning one is discarded)
        self.loads = Loads(self._load_partition)  # assigned partitions loaded ahead of their first event
        self.resend: set[int] = set()  # loaded partitions whose outboxes their first flush re-sends
        self.arrived: dict[TP, float] = {}  # when a message of each input partition last arrived (monotonic)
        self.inputs = app.topic(*topics.CONSUMED_TOPICS, key_type=bytes, value_type=bytes)
        self.routed = app.topic(topics.ROUTED, key_type=bytes, value_type=bytes)
        self.table = app.Table(topics.STATE_TABLE, partitions=settings.partitions,
                               key_type=bytes, value_type=bytes, options=rocksdb_options(settings))
        self.router = Router(settings.partitions)
        self.clocks = LocationClocks(self.router.owner, silent_after_s=settings.silent_after_seconds,
                                     calendar=settings.calendar)
        app.agent(self.inputs, name="engine")(self.process)
        app.timer(settings.tick_interval_ms / 1000, name="tick")(self.tick)
        self.log_reader = LogReader(settings)
        # input partition → a read of its tail from the log under way, for this state (_skipped_tails)
        self.tail_reads: dict[TP, tuple[asyncio.Future[list[Any] | None], PartitionState]] = {}
        self.sender = BatchSender(app.producer)
        self.listed_ends: dict[TP, int] = {}  # input partition → the end offset the broker last listed
        # the batch's flushes' seconds draining, writing history, changelog and cache, sending postings and feeds
        self.flush_took = [0.0] * 5
        self.gate = InputGate(self._seek)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_recovered)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    # ---- the agent -----------------------------------------------------------------------------
    async def process(self, stream: faust.StreamT[bytes]) -> None:
        """The agent. Its stream subscribes the inputs (so Faust assigns them with the table's partitions),
        but their records come through the intake, as fetched (:mod:`streams.intake`)."""
        window = self.settings.batch_window_ms / 1000
        while True:
            batch = await self.intake.take(self.settings.batch_max, window, self._behind)
            # the whole batch has arrived, whichever part goes first (a tail read waits for inputs that have not)
            self.arrived.update(dict.fromkeys((tp for tp, _ in batch), time.monotonic()))
            for part in self.intake.parts(batch):
                await self.handle(part)  # the reservations first, decided and published before the rest

    async def handle(self, slices: list[Slice]) -> None:
        """Apply one batch (each input partition's records in offset order) and write it to the cache; flush
        when due, and commit what the flushed state covers."""
        started = time.perf_counter()
        now_ms = int(self.clock() * 1000)
        for partition in sorted({tp.partition for tp, _ in slices} & self._owned() - self.states.keys()):
            await self.loads.start(partition, self.rebalances)  # installs the state unless a rebalance intervened
        loaded = time.perf_counter()
        gaps, gaps_s = 0, 0.0
        batch = Batch()
        done: list[Any] = []
        for tp, records in slices:
            state = self.states.get(tp.partition)
            if state is None:  # fetched before a rebalance took the partition away (also during a load above)
                continue
            code = topics.TOPIC_CODE[tp.topic]
            taken = len(done)
            for record in records:
                expected = state.expects(code)
                verdict = self.gate.admit(tp, record.offset, expected)
                if verdict is Verdict.GAP and expected is not None:
                    gaps, read_at = gaps + 1, time.perf_counter()
                    skipped = await self._read_log(tp, expected, record.offset)
                    gaps_s += time.perf_counter() - read_at
                    if skipped is None:
                        self.gate.hold(tp, expected)
                        verdict = Verdict.HOLD
                    else:
                        for read in skipped:
                            self._apply(state, read, now_ms, batch)
                        verdict = Verdict.APPLY
                if verdict is Verdict.HOLD:
                    continue
                done.append(record)
                if verdict is not Verdict.COVERED:
                    self._apply(state, record, now_ms, batch)
            if len(done) > taken:
                self.last_offsets[(tp.topic, tp.partition)] = done[-1].offset
                batch.states[tp.partition] = state
        self._skipped_tails(batch, now_ms)
        # A rebalance during an await above may have taken a partition away (or reloaded it): what was
        # applied to a state no longer current is neither flushed nor committed; its new owner replays it.
        states = {p: state for p, state in batch.states.items() if self.states.get(p) is state}
        done = [record for record in done if record.partition in states]
        self.unflushed.update(states)
        applied = time.perf_counter()
        await self._write_outputs(batch)
        sent = time.perf_counter()
        states = {p: state for p, state in states.items() if self.states.get(p) is state}  # after the await
        deciding = {p for p, state in states.items() if state.deciding}
        behind = self._behind()
        fresh: list[int] = []
        snapshots: dict[int, list[tuple[str, str, Position]]] = {}
        if deciding or not behind or time.monotonic() - self.cache_written_at >= BEHIND_CACHE_INTERVAL_SECONDS:
            fresh = self.epochs.renew(states)  # right before the snapshots, no await between: whole partitions
            snapshots = {p: state.snapshots() for p, state in states.items()}
        # else: the changes stay marked in the states, for a later batch's snapshots or the flush's
        self.flush_took = [0.0] * 5
        flushes: dict[int, Flush] = {}
        if deciding:
            # the cache shows a decision's effect with it, not before: the deciding partitions flush first
            flushes = await self._flush(now_ms, snapshots, fresh, deciding)
        elif snapshots or fresh:
            await self._write_cache(snapshots, [], fresh)
            self.cache_written_at = time.monotonic()
        # while partitions load, flushes wait (the loads are what readiness waits for)
        if not self.loads.under_way() and (due := self._due(time.monotonic(), behind)):
            flushes.update(await self._flush(now_ms, {}, [], longest_waiting(due, self.flushed_at, self.started)))
        await self.gate.seek_due()
        ended = time.perf_counter()
        self.metrics.batch(done, batch.dead_letters, flushes, snapshots, ended - started)
        if ended - started > SLOW_BATCH_SECONDS:
            log.warning("a batch of %d records held the agent %.1f s: loading partitions %.1f s, reading %d gaps "
                        "from the log %.1f s, applying %.1f s, outputs %.1f s, the cache and flushes %.1f s; %d "
                        "partitions flushed: draining %.1f s, history %.1f s, changelog %.1f s, cache %.1f s, "
                        "postings and feeds %.1f s", len(done), ended - started, loaded - started, gaps, gaps_s,
                        applied - loaded - gaps_s, sent - applied, ended - sent, len(flushes),
                        *self.flush_took)

    def _due(self, now: float, behind: bool) -> set[int]:
        """The partitions applied to since their last flush whose turn has come: partition ``p`` flushes
        once a :meth:`_flush_interval`, at ``p / ATS_PARTITIONS`` of it, so a worker's partitions flush one
        after another, not all together (one that never flushed, at its first turn after the worker started).

        All together, a worker's flush held its agent for a whole flush once an interval, and every
        answer due meanwhile waited: at 2,000 lines/s over 8 partitions, ~150 ms once a second (draining
        ~2,800 records ~35 ms, history ~17 ms, changelog ~45 ms, cache and feeds ~35 ms), the p99 of
        ``benchmarks.freshness``. Staggered, each partition's flush is as big as before and as often.
        While the worker is behind, partitions whose last flush is an interval old are due together (a
        batch flushes a few of them: :func:`longest_waiting`)."""
        interval, partitions, last = self._flush_interval(behind), self.settings.partitions, self.flushed_at
        if behind:  # answers are seconds old then anyway
            return {p for p in self.unflushed if now - last.get(p, self.started) >= interval}
        return {p for p in self.unflushed if turn_due(p, partitions, interval, last.get(p, self.started), now)}

    def _behind(self) -> bool:
        """Whether the inputs hold more than :data:`BEHIND_RECORDS` (or a batch) the worker has not applied.
        A batch was the bar: 4,000 envelopes of 50 lines (200k lines, seconds of work) were not behind, and
        every small batch wrote the cache."""
        return self.lag() > min(BEHIND_RECORDS, self.settings.batch_max)

    def _flush_interval(self, behind: bool) -> float:
        """Seconds between flushes: ``ATS_FLUSH_INTERVAL_MS``, stretched :data:`BEHIND_FLUSH_FACTOR` times
        while the worker is behind its inputs (:meth:`_behind`). A flush costs per bucket touched, not per
        event, so fewer, bigger flushes drain a backlog sooner; caught up, the interval is back (what a
        crash replays, and how far commits trail the state, stay bounded by the stretched interval)."""
        interval = self.settings.flush_interval_ms / 1000
        return interval * BEHIND_FLUSH_FACTOR if behind else interval

    async def _flush(self, now_ms: int, snapshots: dict[int, list[tuple[str, str, Position]]], fresh: list[int],
                     only: set[int]) -> dict[int, Flush]:
        """Steps 4 to 7 for the partitions ``only`` applied to since their last flush (with ``snapshots``
        written to the cache beside the decisions); returns the flushes."""
        flushing = only & self.unflushed
        self.unflushed -= flushing
        self.flushed_at.update(dict.fromkeys(flushing, time.monotonic()))
        states = {p: state for p in flushing if (state := self.states.get(p)) is not None}
        started = time.perf_counter()
        flushes = {p: flush for p, state in states.items() if (flush := state.drain(now_ms)) is not None}
        drained = time.perf_counter()
        await self._write_history({p: flush.history for p, flush in flushes.items() if flush.history})
        pushed = time.perf_counter()
        await self._write_changelog(flushes)
        logged = time.perf_counter()
        written = dict(snapshots)
        for partition, flush in flushes.items():
            written[partition] = [*written.get(partition, []), *flush.cache]
        await self._write_cache(written, [hold for flush in flushes.values() for hold in flush.decisions], fresh)
        cached = time.perf_counter()
        await self._deliver(states, flushes)
        took = (drained - started, pushed - drained, logged - pushed, cached - logged, time.perf_counter() - cached)
        self.flush_took = [sum(pair) for pair in zip(self.flush_took, took, strict=True)]
        # step 7: the group's offsets follow the state (a worker that takes a partition over resumes where
        # its stored marker says, whatever was committed: Engine._load)
        for partition, state in states.items():
            if self.states.get(partition) is state:
                self.intake.cover(partition, {topic: state.expects(code) for topic, code in topics.TOPIC_CODE.items()})
        return flushes

    async def _read_log(self, tp: TP, start: int, end: int) -> list[Any] | None:
        try:  # bounded: a read that hangs must fall back to seeking, never stall the partition
            return await asyncio.wait_for(self.log_reader.read(tp, start, end),
                                          timeout=2 * self.log_reader.timeout_seconds)
        except TimeoutError:
            return None

    def _skipped_tails(self, batch: Batch, now_ms: int) -> None:
        """Read from the log what the consumer skipped at the end of an input: no later message arrives
        to show that gap (:mod:`streams.gate`), so an input whose end (:meth:`_end`: fetched, or listed
        by the broker) lies past what the state consumed, and that delivered nothing for
        ``TAIL_WAIT_SECONDS`` (``TAIL_WAIT_BEHIND_SECONDS`` while the worker is behind), is read,
        ``ATS_BATCH_MAX`` records at most at a time. The partitions checked are the batch's: each owned
        partition gets a clock tick every interval.

        The read runs in a task of its own, off the agent's path: it takes a fetch round trip at least,
        and up to the log reader's timeout, and every answer due meanwhile waited for it (measured: every
        decision of a contended holds run held 2.3 s, twice in six runs). A later batch of the partition
        applies what it found, from the offset the state then expects: what the consumer delivered
        meanwhile is not applied twice.

        Measured in a ten-minute soak that fell behind: reads every 3 s of inputs the consumer was about
        to deliver, up to 16,505 records each, added work to a worker already behind and took its RSS
        from 358 MiB to 1.2 GiB in 30 s."""
        now = time.monotonic()
        for tp, (read, state) in list(self.tail_reads.items()):
            if self.states.get(tp.partition) is not state:  # revoked or loaded again meanwhile
                del self.tail_reads[tp]
            elif read.done() and batch.states.get(tp.partition) is state:
                del self.tail_reads[tp]
                self._apply_tail(tp, state, read, now_ms, batch)
        wait = TAIL_WAIT_BEHIND_SECONDS if self._behind() else TAIL_WAIT_SECONDS
        delivering: bool | None = None  # asked once, when an ats.network tail is due
        for partition, state in list(batch.states.items()):
            if self.states.get(partition) is not state:
                continue
            for topic, code in topics.TOPIC_CODE.items():
                tp = TP(topic, partition)
                expected, end = state.expects(code), self._end(tp)
                if expected is None or end is None or end <= expected or tp in self.tail_reads:
                    continue
                waited = now - self.arrived.setdefault(tp, now)
                if waited < wait:
                    continue
                if topic == topics.NETWORK and waited < NETWORK_TAIL_WAIT_SECONDS:
                    if delivering is None:
                        delivering = any(lag for other, lag in self.lags().items() if other.topic != topics.NETWORK)
                    if delivering:
                        continue
                self.arrived[tp] = now
                log.info("%s: nothing delivered from offset %d for %.1f s while the log ends at %d: reading the "
                         "log", tp, expected, waited, end)
                read = asyncio.ensure_future(self._read_log(tp, expected, min(end, expected + self.settings.batch_max)))
                self.tail_reads[tp] = (read, state)

    def _apply_tail(self, tp: TP, state: PartitionState, read: asyncio.Future[list[Any] | None], now_ms: int,
                    batch: Batch) -> None:
        """What a tail read found, from the offset ``state`` expects now."""
        if read.cancelled():
            return
        if (error := read.exception()) is not None:
            log.warning("%s: reading the log failed: %r", tp, error)
            return
        records = read.result()
        expected = state.expects(topics.TOPIC_CODE[tp.topic])
        fresh = [record for record in records or () if expected is None or record.offset >= expected]
        log.info("%s: read %s records from the log, %d of them not delivered meanwhile", tp,
                 "no" if records is None else len(records), len(fresh))
        for record in fresh:
            self._apply(state, record, now_ms, batch)

    def _end(self, tp: TP) -> int | None:
        """Where an input partition ends, as far as this worker knows: the later of the high watermark its
        fetches report and the end the broker last listed (:meth:`_list_ends`). A partition the consumer
        stopped fetching (paused while Faust's buffer was full, say) reports no later high watermark."""
        ends = [end for end in (self._highwater(tp), self.listed_ends.get(tp)) if end is not None]
        return max(ends) if ends else None

    def _highwater(self, tp: TP) -> int | None:
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception as exc:  # not fetched yet
            log.debug("no high watermark for %s yet: %s", tp, exc)
            return None
        return highwater if highwater is not None and highwater >= 0 else None

    def _apply(self, state: PartitionState, message: Any, now_ms: int, batch: Batch) -> None:
        """One input record (as fetched, or read from the log to fill a gap)."""
        source = Source(topics.TOPIC_CODE[message.topic], message.offset)
        if message.topic == topics.ROUTED:
            tick = self._routed(state, message, source, now_ms, batch)
        elif message.topic == topics.NETWORK:
            tick = self._network(state, message, source, batch)
        else:
            tick = self._input(state, message, source, now_ms, batch)
        state.consumed(source, quiet=tick)

    async def _seek(self, tp: TP, offset: int) -> None:
        await self._seek_all({tp: offset})

    async def _seek_all(self, offsets: Mapping[TP, int]) -> None:
        """Seek the consumer (the records of these partitions the intake holds are delivered again)."""
        for tp in offsets:
            self.intake.drop(tp)
        # seek_wait runs in the consumer's own thread (Consumer.seek would touch aiokafka from this one)
        await self.app.consumer.seek_wait(offsets)

    def _owned(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topics.ROUTED}

    def _input(self, state: PartitionState, message: Any, source: Source, now_ms: int, batch: Batch) -> bool:
        try:
            event = validate_event(message.value, expected_type=topics.INPUT_TOPICS[message.topic])
        except EventRejected as exc:
            batch.dead(exc.rejection, message.topic, message.partition, message.offset, message.value)
            return False
        business_ms, arrival_ms = epoch_ms(event.occurred_at), _arrival_ms(message, now_ms)
        self.metrics.lateness.observe(lateness_seconds(business_ms, arrival_ms))
        for leg in legs(event):
            owner = self.router.owner(leg.location_id)
            if owner != message.partition:
                batch.routed[owner].append(self.router.leg_message(
                    leg, message.topic, message.partition, message.offset, message.value))
                continue
            self.clocks.heard(owner, leg.location_id, business_ms, arrival_ms)
            rejection = state.apply(event, leg, source, now_ms)
            if rejection is not None:
                batch.dead(rejection, message.topic, message.partition, message.offset, message.value)
        return False

    def _routed(self, state: PartitionState, message: Any, source: Source, now_ms: int, batch: Batch) -> bool:
        """Apply a re-routed leg, or a clock tick (returns True for a tick)."""
        try:
            record = read_routed(message.value)
        except ValueError as exc:
            batch.dead(Rejection("invalid_routed_record", str(exc)), message.topic, message.partition,
                       message.offset, message.value)
            return False
        if isinstance(record, Tick):
            state.tick(record.now_ms, source)
            return True
        origin = (record.topic, record.partition, record.offset)
        payload = record.payload
        try:
            event = validate_event(payload, expected_type=topics.INPUT_TOPICS[record.topic])
        except EventRejected as exc:  # validated before routing; only a changed rule gets here
            batch.dead(exc.rejection, *origin, payload)
            return False
        for leg in legs(event):
            if leg.leg != record.leg or leg.location_id != record.location_id:
                continue
            if self.router.owner(leg.location_id) != message.partition:
                batch.dead(Rejection("misrouted", f"leg for {leg.location_id} on partition {message.partition}"),
                           *origin, payload)
                continue
            self.clocks.heard(message.partition, leg.location_id, epoch_ms(event.occurred_at),
                              _arrival_ms(message, now_ms))
            rejection = state.apply(event, leg, source, now_ms)
            if rejection is not None:
                batch.dead(rejection, *origin, payload)
        return False

    def _network(self, state: PartitionState, message: Any, source: Source, batch: Batch) -> bool:
        """Apply an ``ats.network`` record (positions of SKUs this partition sums); never a tick."""
        try:
            entries = entries_from_wire(orjson.loads(message.value if message.value is not None else b""))
        except (orjson.JSONDecodeError, ValueError) as exc:
            batch.dead(Rejection("invalid_network_record", str(exc)), message.topic, message.partition,
                       message.offset, message.value)
            return False
        state.apply_network(entries, source)
        return False

    # ---- state ---------------------------------------------------------------------------------
    def _load_ahead(self, owned: set[int]) -> None:
        """Start loading every partition in ``owned`` still without a state (:mod:`streams.loads`)."""
        for partition in sorted(owned - self.states.keys()):
            self.loads.start(partition, self.rebalances)

    async def _on_recovered(self, sender: Any, **kwargs: Any) -> None:
        """Faust restored the table for the current assignment: load its partitions now, not on their
        first event (a partition without traffic would wait for its clock tick)."""
        self._load_ahead(self._owned())

    async def _load_partition(self, partition: int, generation: int) -> None:
        """Load the partition (:meth:`_load`) and install its state, unless a rebalance came in between."""
        if generation != self.rebalances or partition in self.states:
            return
        state = await self._load(partition, generation)
        if state is not None and generation == self.rebalances:
            self.states[partition] = state
            if state.outbox() or state.change_outbox() or self.network.channels:
                self.resend.add(partition)

    async def _load(self, partition: int, generation: int) -> PartitionState | None:
        """The partition's state as its changelog left it (inputs it never consumed start at their
        beginning), its positions re-written to the cache whole (its outboxes are re-sent by its first
        flush: :meth:`_deliver`). None when a
        rebalance (``generation`` no longer current) cut it short: a load from a table another assignment
        may change is dropped, and writes nothing further."""
        started = time.monotonic()

        def current() -> bool:
            return generation == self.rebalances

        self.epochs.forget([partition])  # confirmed again by this load's whole snapshot
        state = partition_state(self.settings, partition, feed=self.feed, network=self.network)
        records = await read_state(self.table.data, state, current)
        if records is None or not await self._streams_resumed(current):
            return None
        decoded = time.monotonic()
        fresh = [TP(topic, partition) for topic, code in topics.TOPIC_CODE.items() if state.expects(code) is None]
        if fresh:
            for tp, offset in (await self.app.consumer.earliest_offsets(*fresh)).items():
                state.begin(topics.TOPIC_CODE[tp.topic], offset)
        # Resume where the state ends, not where the group committed: the commit lags the state (skip
        # what is covered) or, after an offset reset or a quiet tick, runs ahead of it (seek back).
        committed = getattr(self.app.consumer, "_committed_offset", {})
        resume = {TP(topic, partition): state.expects(code) for topic, code in topics.TOPIC_CODE.items()}
        moves = {tp: offset for tp, offset in resume.items() if offset is not None and committed.get(tp) != offset}
        if moves and current():
            await self._seek_all(moves)
        await self.clocks.load(self.cache, partition)  # when its locations last spoke: not in the changelog
        if not current():
            return None
        await self._recache(state, current)  # the cache may be empty or stale: re-write what this partition owns
        cached = time.monotonic()
        if not current():
            return None
        await self._write_cache({}, state.recent_decisions(), [])  # stored before a crash, maybe never published
        log.info("partition %d: loaded %d state records (%d positions, %d holds; %d postings and %d change records "
                 "to re-send) in %.2f s (decoded %.2f s, re-cached %.2f s); inputs resume at %s", partition, records,
                 sum(len(b.positions) for b in state.buckets.values()), len(state.holds), len(state.outbox()),
                 len(state.change_outbox()), time.monotonic() - started, decoded - started, cached - decoded,
                 state.inputs)
        return state if current() else None

    async def _streams_resumed(self, current: Callable[[], bool]) -> bool:
        """Wait until Faust has sought the inputs to the group's offsets after its table recovery (a load
        begun at ``on_rebalance_complete`` gets there first): the load's own seek must come after it."""
        tables: Any = self.app.tables  # actives_ready is not in the declared type
        while current() and not tables.actives_ready:  # noqa: ASYNC110 (a flag Faust sets: no event to wait on)
            await asyncio.sleep(0.02)
        return current()

    async def _recache(self, state: PartitionState, current: Callable[[], bool]) -> None:
        """Every position of a loaded partition to the cache, in pipelines of about
        :data:`~streams.partitionload.RECACHE_SLICE_POSITIONS` (one script call per SKU hash and location index),
        the next sent while the cache takes the one before; then its holds, its locations' clocks and its
        epoch (:mod:`streams.cacheepoch`), which vouches for the rest. Nothing more once ``current()`` is
        false or a write failed: the agent writes an unconfirmed partition whole once the cache answers."""
        if not self.epochs.reachable:
            return
        try:
            with self.metrics.cache_write():
                if not await write_whole(self.cache, whole_slices(self.cache, state), current):
                    return
        except CacheErrors as exc:
            log.warning("cache write failed (%s): every partition is written whole once the cache answers", exc)
            self.epochs.failed(self.states)
            return
        await self._write_cache({}, [], [state.partition], {state.partition: state})

    def _on_revoked(self, sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        """What was applied of a revoked partition and not flushed is dropped, uncommitted: whoever owns
        the partition next replays it from the stored marker."""
        self.rebalances += 1
        partitions = {tp.partition for tp in revoked}
        for partition in partitions:
            self.states.pop(partition, None)
            self.unflushed.discard(partition)
            self.flushed_at.pop(partition, None)
        self.intake.clear()  # fetched for the old assignment: each partition's owner reads it again
        self.intake.uncover(revoked)
        for tp in [tp for tp in self.tail_reads if tp.partition in partitions]:
            self.tail_reads.pop(tp)[0].cancel()
        self.loads.forget(partitions)
        self.resend.difference_update(partitions)
        self.epochs.forget(partitions)
        self.clocks.forget(partitions)
        self.gate.reset()

    async def _on_shutdown(self, sender: Any, **kwargs: Any) -> None:
        self.loads.cancel()
        for read, _ in self.tail_reads.values():
            read.cancel()
        await self.log_reader.close()

    def _on_assigned(self, sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        self.rebalances += 1
        self.gate.reset()
        self.intake.clear()
        use_true_ends(self.app.consumer, self.log_reader, [topics.CHANGELOG_TOPIC])  # before recovery reads

    # ---- flushing ------------------------------------------------------------------------------
    async def _write_outputs(self, batch: Batch) -> None:
        if batch.routed:
            await self.sender.send((topics.ROUTED, key, value, partition)
                                   for partition, messages in batch.routed.items() for key, value in messages)
        if batch.dead_letters:
            await self.sender.send(((topics.DEAD_LETTER, key, value, None) for key, value in batch.dead_letters),
                                   remember_keys=False)

    async def _deliver(self, states: Mapping[int, PartitionState], flushes: Mapping[int, Flush]) -> None:
        """Send the flushes' ERP postings, their change records (to the feed, keyed by SKU, each partition's
        in its order) and their changed positions (to the partitions that sum their SKUs, ``ats.network``,
        packed per destination), all in one send: one delivery to wait for, then the states may forget
        the postings and change records. Only once the changelog holds them: a posting, change record or
        ``ats.network`` entry is never ahead of the state a replay would start from (a crash before this
        send is made good by the partition's next load, below).

        A partition loaded since its last flush (:attr:`resend`) sends its outboxes whole instead: the
        postings and change records stored before a restart and maybe never sent (or never confirmed),
        unchanged, and the flush's own; and every position a watched channel sells from (a crash between
        a flush's changelog and its ``ats.network`` records would otherwise lose them; values: sent again,
        harmless). One delivery per flush, not one per partition's postings and one more for the rest: on
        a peak day a batch that flushed 5-7 partitions spent 2.0-2.3 s in these sends."""
        resend = self.resend.intersection(states)  # also when their drain found nothing to flush
        # ats.network entries are values, the last one sent stands: a partition revoked during the flush's
        # awaits sends none (its new owner's first flush sends all of its positions, which this one's, sent
        # later, would overwrite with older values); postings and change records carry ids, sent either way
        owned = {p for p, state in states.items() if self.states.get(p) is state}
        postings: list[Posting] = []
        changes: list[Change] = []
        shares: dict[int, Sequence[Entry]] = {}
        for partition, state in states.items():
            if partition in resend:
                postings += state.outbox()
                changes += state.change_outbox()
                if partition in owned:
                    shares[partition] = state.network_snapshot()
            elif (flush := flushes.get(partition)) is not None:
                postings += flush.postings
                changes += flush.changes
                if partition in owned:
                    shares[partition] = flush.network
        partitions = self.settings.partitions
        records: list[Record] = [(topics.ERP_MOVEMENTS, posting.location_id.encode(),
                                  orjson.dumps(wire.posting_record(posting)), None) for posting in postings]
        records += [(topics.NETWORK, f"p{sender}".encode(), value.encode(), destination)
                    for sender, changed in shares.items() if changed
                    for destination, value in network_records(changed, partitions, sender)]
        records += [(topics.AVAILABILITY, change.sku.encode(), orjson.dumps(change_record(change)), None)
                    for change in changes]
        if records:
            await self.sender.send(records, remember_keys={topics.ERP_MOVEMENTS})  # locations repeat, SKUs not
        for partition, state in states.items():
            if partition in resend:
                state.confirm_outboxes()  # the agent alone touches an installed state: all they held was delivered
                if self.states.get(partition) is state:  # not loaded again meanwhile
                    self.resend.discard(partition)
            elif (flush := flushes.get(partition)) is not None:
                if flush.postings:
                    state.confirm(flush.postings)
                if flush.changes:
                    state.confirm_changes(flush.changes)

    async def _write_cache(self, snapshots: dict[int, list[tuple[str, str, Position]]], decisions: list[Hold],
                           fresh: list[int], loaded: Mapping[int, PartitionState] | None = None) -> None:
        """Position snapshots per partition (one hash per SKU), then reservation decisions (cached, then
        published), then the epochs of ``fresh`` partitions (written whole), in one pipeline. Decisions come
        only from a flush whose changelog is written. A cache that does not answer is written whole again
        once it does (:mod:`streams.cacheepoch`), never a reason to stop applying. ``loaded``: the states
        of ``fresh`` partitions being loaded (not yet in :attr:`states`)."""
        if not any(snapshots.values()) and not decisions and not fresh and not self.clocks.changed:
            return
        by_sku: dict[str, dict[str, bytes]] = defaultdict(dict)
        by_location: dict[str, dict[str, int]] = defaultdict(dict)  # the lowest-ATS index of each location
        for changed in snapshots.values():
            for sku, location_id, position in changed:
                by_sku[sku][location_id] = wire.cache_field(position)
                by_location[location_id][sku] = position.net
        pipe = self.cache.pipeline(transaction=False)
        for sku, fields in by_sku.items():
            pipe.hset(topics.position_key(sku), mapping=fields)  # type: ignore[arg-type]
        if by_sku:  # after the hashes: an API that keeps answers in memory drops these SKUs' (api/answercache.py)
            pipe.publish(topics.CHANGED_CHANNEL, wire.changed_message(by_sku))
        for location_id, scores in by_location.items():
            pipe.zadd(topics.location_index_key(location_id), scores)
        for hold in decisions:
            body = orjson.dumps(wire.decision(hold))
            # kept as long as the worker remembers the hold, so a retry meets the original outcome
            pipe.set(topics.reservation_key(hold.reservation_id), body, ex=self.settings.dedupe_window_seconds)
            pipe.publish(topics.DECISIONS_CHANNEL, body)
        self._rewrite_holds(pipe, fresh, {**self.states, **(loaded or {})})
        self.clocks.write(pipe, fresh)  # when the locations last spoke (all of a partition written whole)
        self.epochs.mark(pipe, fresh)  # last: the snapshots before it vouch for it
        try:
            with self.metrics.cache_write():
                await pipe.execute()
        except CacheErrors as exc:
            log.warning("cache write failed (%s): every partition is written whole once the cache answers", exc)
            self.epochs.failed(self.states)
            return
        self.epochs.written(fresh)

    async def _write_history(self, history: History) -> None:
        """Each position's entries of a flush pushed in the order applied (its list is newest first),
        trimmed to ``ATS_HISTORY_LIMIT`` (with room for the second copy an event applied again after a
        crash may leave: the API shows one) and kept ``ATS_HISTORY_HORIZON_SECONDS`` past its last entry:
        :data:`PUSH_HISTORY`, one call per partition (and :data:`HISTORY_CALL_KEYS` positions).

        Before the flush's changelog records: an event the stored state covers is never applied again,
        so its entry must be in the cache by then (a crash in between applies it again: the same entry id,
        shown once). Once a flush, not with every cache write: a position busy in many batches is one
        push. A cache that does not take them loses them (the numbers they explain are rebuilt)."""
        if not history:
            return
        kept = self.settings.history_limit + HISTORY_SLACK
        calls: list[tuple[list[str], list[Any]]] = []
        for partition, by_position in history.items():
            positions = list(by_position.items())
            for start in range(0, len(positions), HISTORY_CALL_KEYS):
                chunk = positions[start:start + HISTORY_CALL_KEYS]
                calls.append(([topics.history_key(partition, sku, location_id) for (sku, location_id), _ in chunk],
                              [b"\n".join(pushed[-kept:]) for _, pushed in chunk]))  # only what the trim keeps
        try:
            with self.metrics.cache_write():
                await self._push_history(calls, kept - 1)
        except CacheErrors as exc:
            log.warning("history entries of %d positions not written (%s)", sum(len(k) for k, _ in calls), exc)

    async def _push_history(self, calls: list[tuple[list[str], list[Any]]], keep: int) -> None:
        """The script is loaded before its first call; a cache that forgot it since (restarted) learns it
        again, and the calls run again. Not by the error alone: redis-py annotates a pipeline's error with
        the failed command, shortened by ``textwrap`` from every key and entry of the call (1.5% of an
        ingesting worker's samples, py-spy, for the first flush after a start)."""
        horizon = self.settings.history_horizon_seconds
        for attempt in (1, 2):
            if not self.history_script_known:
                await self.cache.script_load(PUSH_HISTORY)
                self.history_script_known = True
            pipe = self.cache.pipeline(transaction=False)
            for keys, blobs in calls:
                pipe.evalsha(PUSH_HISTORY_SHA, len(keys), *keys, keep, horizon, *blobs)
            try:
                await pipe.execute()
                return
            except NoScriptError:
                self.history_script_known = False
                if attempt == 2:
                    raise

    def _rewrite_holds(self, pipe: Any, partitions: list[int], states: Mapping[int, PartitionState]) -> None:
        """With a partition written whole (the cache lost it, or the partition was taken over), also every
        hold it remembers, for the rest of the time it remembers it (not published: nobody waits on them),
        and the API's claim of its id for its location (never over a claim the cache still has)."""
        now_s = self.clock()
        for partition in partitions:
            state = states.get(partition)
            for hold in state.holds.values() if state is not None else ():
                left = int(hold.decided_ms / 1000 + self.settings.dedupe_window_seconds - now_s)
                if left > 0:
                    pipe.set(topics.reservation_key(hold.reservation_id), orjson.dumps(wire.decision(hold)), ex=left)
                    pipe.set(topics.reservation_claim_key(hold.reservation_id), hold.location_id.encode(), ex=left,
                             nx=True)

    async def _write_changelog(self, flushes: dict[int, Flush]) -> None:
        """Each partition's records, then its marker, below Faust's ``Table.__setitem__``: every record goes
        to the table's store (the local copy that ``_load`` and a kept RocksDB read) and straight to the
        producer, and once the changelog has them all, the store learns the offset it is stored up to
        (what Faust's own changelog callback records, so a kept RocksDB store recovers from there).

        Through the table, every record took a ``send_soon``, a pass through Faust's producer buffer and
        a wait on it, one record per event-loop turn: ~0.7 ms a record, most of a flush (py-spy)."""
        if not flushes:
            return
        store: Any = self.table.data  # a Faust store: set_persisted_offset is not in its declared type
        topic = self.table.changelog_topic.get_topic_name()
        messages: list[Record] = []
        for partition, flush in flushes.items():
            with _as_partition(partition):  # the store writes to the partition of the current event
                for key, value in [*flush.records, flush.marker]:  # the marker last: it vouches for the rest
                    raw_key, raw = key.encode(), value.encode() if value is not None else None
                    if raw is not None:
                        store[raw_key] = raw
                    elif raw_key in store:
                        del store[raw_key]
                    messages.append((topic, raw_key, raw, partition))
        for (_, partition), offset in (await self.sender.send(messages)).items():
            store.set_persisted_offset(TP(topic, partition), offset)

    # ---- the clock -----------------------------------------------------------------------------
    async def tick(self) -> None:
        """Send each owned partition its clock tick (expiry is applied by the owner, in its stream)."""
        now_ms = int(self.clock() * 1000)
        value = orjson.dumps({"kind": "tick", "now_ms": now_ms})
        assigned = sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topics.ROUTED)
        for partition in assigned:
            await self.routed.send(key=b"tick", value=value, partition=partition)
        await self.gate.seek_due()  # also when Faust dropped every message of a partition
        tables: Any = self.app.tables  # actives_ready is not in the declared type
        if tables.actives_ready:  # recovered and resumed: a partition whose load failed is loaded again
            self._load_ahead(set(assigned))
        await self.epochs.check(self.cache, assigned)
        await self._list_ends()
        try:
            await self.heartbeat(assigned)
        except CacheErrors as exc:  # a cache outage must not stop the clock (nor crash the worker)
            if self.epochs.reachable:  # once per outage
                log.warning("heartbeat not written: the cache does not answer: %s", exc)
            self.epochs.failed(())

    async def heartbeat(self, assigned: list[int]) -> None:
        """``caught_up`` (what ``/readyz`` reads): within a batch of the inputs' ends, and every assigned
        partition loaded, its positions written whole to the cache since it was assigned or the cache last
        lost them, and the outboxes its load found re-sent (``loading`` lists those that are not)."""
        lag = self.lag()
        loading = [p for p in assigned if p not in self.states or p not in self.epochs.confirmed or p in self.resend]
        beat = {"at": self.clock(), "worker": self.worker_id, "partitions": assigned, "lag": lag,
                "loading": loading, "caught_up": lag <= self.settings.batch_max and not loading}
        await self.cache.set(topics.heartbeat_key(self.worker_id), orjson.dumps(beat), ex=30)

    async def _list_ends(self) -> None:
        """Ask the broker where each assigned input ends (:meth:`lags`). A worker that falls behind stops
        fetching, and the high watermarks its fetches report then stop too: a heartbeat said 4-9k records
        behind while 265k were, and ``/readyz`` believed it. A broker that does not answer keeps the last."""
        inputs = [tp for tp in self.app.assignor.assigned_actives() if tp.topic in topics.TOPIC_CODE]
        try:
            self.listed_ends = await asyncio.wait_for(self.log_reader.listed_ends(inputs), timeout=2.0)
        except (TimeoutError, KafkaError) as exc:
            log.debug("end offsets not listed: %s", exc)

    def lag(self) -> int:
        """Records behind the inputs' ends: the later of the high watermark fetches report (exact on
        every broker, as far as fetched) and the end the broker last listed (:meth:`_list_ends`)."""
        return sum(self.lags().values())

    def lags(self) -> dict[TP, int]:
        """:meth:`lag` per input partition this worker is assigned."""
        lags = {}
        for tp in self.app.assignor.assigned_actives():
            if tp.topic not in topics.TOPIC_CODE:
                continue
            end = self._end(tp)
            if end is not None:
                state = self.states.get(tp.partition)
                consumed = state.expects(topics.TOPIC_CODE[tp.topic]) if state is not None else None
                if consumed is None:  # not loaded yet: what Faust delivered
                    seen = self.last_offsets.get((tp.topic, tp.partition))
                    consumed = seen + 1 if seen is not None else 0
                lags[tp] = max(0, end - consumed)
        return lags


def turn_due(partition: int, partitions: int, interval: float, last: float, now: float) -> bool:
    """Whether ``partition``'s flush is due at ``now`` (seconds), having last flushed at ``last``: its
    turns are at ``partition / partitions`` of every ``interval``, and one has come since."""
    phase = interval * partition / partitions
    return (now - phase) // interval > (last - phase) // interval


def longest_waiting(due: Iterable[int], flushed_at: Mapping[int, float], never: float,
                    limit: int = FLUSH_PARTITIONS_PER_BATCH) -> set[int]:
    """The ``limit`` partitions of ``due`` that flushed longest ago (``flushed_at``; ``never``: one that has
    not flushed yet); the others flush in the batches after, each batch taking its turn, deciding or not."""
    return set(sorted(due, key=lambda p: (flushed_at.get(p, never), p))[:limit])


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """The RocksDB store's memory, per partition: Faust's defaults (64 MiB write buffers, three of them,
    and a 2 GiB block cache, per partition's database) let a worker's resident memory climb by the write
    buffers of every partition it holds (8 partitions: up to 1.5 GiB) however small its state. The
    engine writes each partition's records once per flush and reads them only when it loads the
    partition: small buffers cost nothing it would notice."""
    mib = 1024 * 1024
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mib, "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * mib}


def _arrival_ms(record: Any, now_ms: int) -> int:
    """When an input record arrived: its Kafka timestamp (milliseconds: every input is aiokafka's record,
    fetched or read from the log), at most ``now_ms``; ``now_ms`` for a record without one."""
    stamp = record.timestamp
    if not stamp or stamp <= 0:
        return now_ms
    return stamp if stamp < now_ms else now_ms


class Batch:
    """What one batch produces besides state: re-routed legs and dead letters."""

    def __init__(self) -> None:
        self.states: dict[int, PartitionState] = {}
        self.routed: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        self.dead_letters: list[tuple[bytes, bytes]] = []

    def dead(self, rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes | None) -> None:
        text = payload.decode("utf-8", "backslashreplace") if payload is not None else None
        record = wire.dead_letter(rejection.reason, rejection.detail, topic, partition, offset, text)
        self.dead_letters.append((f"{topic}:{partition}:{offset}".encode(), orjson.dumps(record)))
        log.info("dead letter %s from %s[%d]@%d: %s", rejection.reason, topic, partition, offset, rejection.detail)


class _as_partition:
    """Make ``partition`` the current event's, so table writes go to that changelog partition.

    Faust routes a table write to the partition of the event being processed, and refuses writes
    outside stream iteration (faust-streaming issue #497); the engine's records are no Faust events
    (:mod:`streams.intake`): the current event is a stand-in that names the partition.
    """

    def __init__(self, partition: int) -> None:
        self.event = _PartitionEvent(partition)

    def __enter__(self) -> None:
        self.token = _current_event.set(weakref.ref(self.event))  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        _current_event.reset(self.token)


class _PartitionEvent:
    """What Faust's stores read of the current event: ``event.message.partition``."""

    __slots__ = ("__weakref__", "message", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.message = self
