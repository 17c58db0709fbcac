"""streams.app.drain_messages: Faust's fetch loop, handing the engine's records to its intake as fetched,
and any other record that can be delivered at once to the conductor directly (through Faust's
``wait_first`` otherwise). Faust's consumer is stood in for by a plain object with the attributes the loop
reads; the records are aiokafka's, the queues real Faust (mode) queues, the intake the engine's."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import TP
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.app import drain_messages
from streams.intake import Intake

CHANGELOG = TP("ats-state-changelog", 0)  # not the intake's: Faust's way
SALES = TP("pos.sales", 0)
HOLDS = TP("pos.holds", 0)


def fetch(tp: TP, offsets: list[int]) -> dict[TopicPartition, list[Any]]:
    return {TopicPartition(*tp): [ConsumerRecord(tp.topic, tp.partition, offset, 1_000, 0, b"k", b"{}", None, 1, 2, ())
                                  for offset in offsets]}


class Consumer:
    def __init__(self, fetches: list[dict[TopicPartition, list[Any]]], *, flow_active: bool = True,
                 queue_room: int = 100) -> None:
        self.fetches = fetches
        self.queue: FlowControlQueue[Any] = FlowControlQueue(maxsize=queue_room, flow_control=FlowControlEvent())
        self.app = SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True,
                                   _tp_index={CHANGELOG: [SimpleNamespace(queue=self.queue)]}),
            consumer_generation_id=1,
            monitor=SimpleNamespace(stream_inbound_time={}, track_tp_end_offset=lambda tp, offset: None))
        self._stopped = asyncio.Event()
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)  # as Faust's
        self._buffered_partitions: set[TP] = set()
        self._commit_every = None
        self._n_acked = 0
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.flow_active = flow_active
        self.suspend_flow = asyncio.Event()
        self.should_stop = False
        self.consumer_stopped_errors = ()
        self.delivered: list[int] = []
        self.waited_first: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.seeks = 0
        self.asked: list[set[TP] | None] = []  # the partitions each fetch asked for (None: Faust's choice)

    async def callback(self, message: Any) -> None:
        self.delivered.append(message.offset)

    async def _wait_next_records(self, timeout: float) -> tuple[dict[TopicPartition, list[Any]], None]:
        self.asked.append(None)
        return self._next(), None

    async def _getmany(self, active_partitions: set[TP], timeout: float) -> dict[TopicPartition, list[Any]]:
        self.asked.append(active_partitions)
        return self._next()

    def _next(self) -> dict[TopicPartition, list[Any]]:
        records = self.fetches.pop(0)
        if not self.fetches:
            self._stopped.set()
        return records

    def _get_active_partitions(self) -> set[TP]:
        return {CHANGELOG, SALES, HOLDS}

    def highwater(self, tp: TP) -> int:
        return 100

    def _to_message(self, tp: TP, record: Any) -> Any:
        return SimpleNamespace(topic=tp.topic, offset=record.offset)

    async def perform_seek(self) -> None:
        self.seeks += 1

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, delivery: Any, suspended: Any) -> None:
        self.waited_first.append(len(self.delivered))
        suspended.close()
        await delivery

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((start, end))


def drain(consumer: Consumer, intake: Intake | None = None) -> Consumer:
    intake = intake if intake is not None else Intake([SALES.topic], max_records=1_000)
    asyncio.run(asyncio.wait_for(drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()), intake), 5))
    return consumer


def test_the_engine_s_records_go_to_its_intake_as_fetched_the_ones_read_already_dropped() -> None:
    intake = Intake([SALES.topic], max_records=1_000)
    consumer = drain(Consumer([fetch(SALES, [0, 1, 2]), fetch(SALES, [1, 2, 3])]), intake)
    assert [record.offset for record in intake.pending[SALES]] == [0, 1, 2, 2, 3], \
        "one read already is dropped; the last read again is not (the engine's gate tells a replay)"
    assert consumer.delivered == [], "none of them goes Faust's way"
    assert consumer._read_offset[SALES] == 3
    assert SALES in consumer.app.monitor.stream_inbound_time, "Faust's check of a stalled stream reads it"


def test_other_records_that_can_be_delivered_at_once_are_in_order_and_without_wait_first() -> None:
    consumer = drain(Consumer([fetch(CHANGELOG, [0, 1, 2]), fetch(CHANGELOG, [2, 1, 5])]))
    assert consumer.delivered == [0, 1, 2, 2, 5], "one read already is skipped; the last read again is not"
    assert consumer.waited_first == []
    assert consumer.gaps == [(3, 5)], "the offsets never delivered, for the acks to step over"
    assert consumer._read_offset[CHANGELOG] == 5


def test_a_full_queue_goes_faust_s_way() -> None:
    full = Consumer([fetch(CHANGELOG, [0, 1])], queue_room=1)
    full.queue.put_nowait("the one record it has room for")
    assert drain(full).waited_first == [0, 1]
    assert full.delivered == [0, 1]


def test_a_fetch_while_the_flow_is_stopped_is_dropped_and_the_consumer_sought_back() -> None:
    intake = Intake([SALES.topic], max_records=1_000)
    stopped = drain(Consumer([fetch(SALES, [0]) | fetch(CHANGELOG, [0])], flow_active=False), intake)
    assert (stopped.delivered, intake.count, stopped.seeks) == ([], 0, 1)


def test_while_the_intake_is_full_only_its_first_topics_are_fetched() -> None:
    intake = Intake([SALES.topic, HOLDS.topic], max_records=3, first=[HOLDS.topic])
    consumer = drain(Consumer([fetch(SALES, [0, 1, 2]), fetch(HOLDS, [7]), fetch(HOLDS, [8])]), intake)
    assert consumer.asked == [None, {HOLDS}, {HOLDS}], "full after the first fetch: the holds alone, twice"
    assert [record.offset for record in intake.pending[HOLDS]] == [7, 8], "they still arrive, beyond max_records"
