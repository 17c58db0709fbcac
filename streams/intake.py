"""The engine's input records, handed over by the consumer's fetch loop a fetch at a time: Faust's
per-message path stays out of the way of the events, as its consumer, its group, its assignment and
its table stay in the engine's.

Faust turns every fetched record into a message, hands it to the conductor, which makes it an event
and puts it in the agent's queue, where the stream takes it, tracks it for acknowledgement and the
agent acknowledges it: ~18 µs of a worker's ~90 µs CPU per single-line event (py-spy, ``--gil``,
``benchmarks.single``). The engine needs none of it: it applies each input partition in offset order
from the offset its state expects (:mod:`streams.gate`), and the offsets a flushed state covers are
what it commits (:attr:`Intake.covered`), not the events it acknowledged one by one.

The fetch loop (:func:`streams.app.drain_messages`) :meth:`puts <Intake.put>` the records of the
engine's topics, a fetched list per input partition, and while the intake is :meth:`full <Intake.full>`
fetches only the partitions of its ``first`` topics (:func:`streams.app._next_records`); the
engine's agent :meth:`takes <Intake.take>` batches of them. A rebalance :meth:`clears <Intake.clear>`
it (what was fetched for the old assignment is its new owner's to read), and a seek
:meth:`drops <Intake.drop>` what it holds of the partition sought.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from faust.types import TP

#: a batch stops taking records once their payloads reach this many bytes (~400 POS envelopes of 50 lines,
#: 35 of 1,000): a batch of thousands of envelopes of 1,000 lines held every line's changes at once: a
#: worker loading 1M positions settled at 3.4 GiB RSS, against 0.7 GiB with this bound (``benchmarks.memory``).
#: The price is in bulk loads: the first worker of ``benchmarks.recovery`` applied its 1M positions in
#: 61-69 s, against 49 s with Faust's take (batches of up to ~480 events, 3.6 GiB); a 4 MiB bound gave 65 s
#: and 1.2 GiB. Treating a full batch as "behind" (the flush interval stretched) gave 16 s for 300k positions
#: instead of 19-21 s, but 1.8 GiB at 1M positions: each partition flushes ~30 µs per new position either way.
BATCH_BYTES = 1 << 20

#: (input partition, its records in offset order) as a batch hands them to the engine
Slice = tuple[TP, Sequence[Any]]


class Intake:
    """Fetched records of ``topics`` not yet taken, per input partition, in offset order. At most about
    ``max_records`` (beyond that the fetch loop fetches the ``first`` topics alone: one fetch may overfill
    it). A batch takes the records of the ``first`` topics before any other's (reservations: someone
    waits for each one's decision; Kafka orders no topic's records against another's)."""

    def __init__(self, topics: Iterable[str], max_records: int, *, first: Iterable[str] = ()) -> None:
        self.topics = frozenset(topics)
        self.first = frozenset(first)
        self.max_records = max_records
        self.pending: dict[TP, list[Any]] = {}  # input partition → records not taken, oldest first
        self.count = 0
        self.covered: dict[TP, int] = {}  # input partition → the next offset the flushed state has not covered
        self._arrived = asyncio.Event()

    # ---- the fetch loop's side -------------------------------------------------------------------
    def put(self, tp: TP, records: Sequence[Any]) -> None:
        if not records:
            return
        pending = self.pending.get(tp)
        if pending is None:
            self.pending[tp] = list(records)
        else:
            pending.extend(records)
        self.count += len(records)
        self._arrived.set()

    def full(self) -> bool:
        return self.count >= self.max_records

    def clear(self) -> None:
        """Forget everything (a rebalance: each partition is read again by whoever owns it next)."""
        self.pending.clear()
        self.count = 0

    def drop(self, tp: TP) -> None:
        """Forget what is pending of ``tp`` (the consumer was sought: it delivers the partition again)."""
        dropped = self.pending.pop(tp, None)
        if dropped:
            self.count -= len(dropped)

    # ---- commits ---------------------------------------------------------------------------------
    def cover(self, partition: int, offsets: Mapping[str, int | None]) -> None:
        """The flushed state of ``partition`` covers each topic's records below its offset (None: it has
        consumed none of that topic): what the consumer commits next
        (:func:`streams.app._consumer_class`)."""
        for topic, offset in offsets.items():
            if offset is not None:
                self.covered[TP(topic, partition)] = offset

    def uncover(self, tps: Iterable[TP]) -> None:
        """Nothing to commit for ``tps`` any more (revoked: their next owner commits them)."""
        for tp in tps:
            self.covered.pop(tp, None)

    # ---- the agent's side ------------------------------------------------------------------------
    async def take(self, max_size: int, window_s: float, behind: Callable[[], bool],
                   max_bytes: int = BATCH_BYTES) -> list[Slice]:
        """The next batch: at most ``max_size`` records and about ``max_bytes`` of payload (at least one
        record), each input partition's in offset order, the partitions taken from in turn (those of the
        ``first`` topics before the others; a partition a batch left records of goes last). Waits for
        the first record; then takes what is there at once, unless the worker is ``behind()``: then it
        waits up to ``window_s`` for more (a backlog fetched a little at a time made batches of a few
        records, and a batch's fixed costs, the cache write and the outputs' delivery, per record)."""
        while not self.count:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken: dict[TP, list[Any]] = {}
        size, number = self._take(taken, 0, 0, max_size, max_bytes)
        if window_s > 0 and number < max_size and size < max_bytes and behind():
            await asyncio.sleep(max(0.0, window_s - (loop.time() - started)))
            self._take(taken, size, number, max_size, max_bytes)
        return list(taken.items())

    def parts(self, batch: list[Slice]) -> list[list[Slice]]:
        """What the engine handles in turn of a batch: the ``first`` topics' records alone, when the batch
        holds others too, then the others. A hold's decision is flushed and published before the rest of
        its batch is applied, not after: on the black-friday day (``ats simulate``, 2 runs against the
        code before, alternated) hold decisions p50 517 / 434 ms against 820 / 1,000, p99 2.1 / 1.6 s
        against 2.5 / 3.1, the lines applied the same (8,927 / 9,180 lines/s against 9,112 / 9,014)."""
        first = [part for part in batch if part[0].topic in self.first]
        if not first or len(first) == len(batch):
            return [batch]
        return [first, [part for part in batch if part[0].topic not in self.first]]

    def _take(self, taken: dict[TP, list[Any]], size: int, number: int, max_size: int,
              max_bytes: int) -> tuple[int, int]:
        """Move pending records into ``taken`` (holding ``number`` records of ``size`` payload bytes) up to the
        bounds, each partition a share in turn; returns ``(size, number)`` then."""
        pending, first = self.pending, self.first
        while pending and number < max_size and size < max_bytes:
            share = max(1, (max_size - number) // len(pending))
            turns = [tp for tp in pending if tp.topic in first] + [tp for tp in pending if tp.topic not in first]
            for tp in turns:
                records = pending.pop(tp)
                head = records[:share]
                for index, record in enumerate(head):
                    size += record.serialized_value_size
                    if size >= max_bytes:
                        head = head[:index + 1]
                        break
                if len(head) < len(records):
                    # Last in turn, for this batch and the next: a batch full before every partition had its
                    # share (its bytes: ~2 partitions' shares of 50-line envelopes) took from the same ones
                    # the next time, while the others' records (a peak day's holds among them) waited.
                    del records[:len(head)]
                    pending[tp] = records
                into = taken.get(tp)
                if into is None:
                    taken[tp] = head
                else:
                    into.extend(head)
                number += len(head)
                self.count -= len(head)
                if number >= max_size or size >= max_bytes:
                    break
        return size, number
