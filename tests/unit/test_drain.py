"""streams.app.drain_messages: Faust's fetch loop, handing a record that can be delivered at once to the
conductor directly, and any other through Faust's ``wait_first``. Faust's consumer is stood in for by a
plain object with the attributes the loop reads; the queues are real Faust (mode) queues."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.app import drain_messages

TP = ("pos.sales", 0)


class Consumer:
    def __init__(self, fetches: list[list[int]], *, flow_active: bool = True, queue_room: int = 100) -> None:
        self.fetches = fetches
        self.queue: FlowControlQueue[Any] = FlowControlQueue(maxsize=queue_room, flow_control=FlowControlEvent())
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True,
                                                          _tp_index={TP: [SimpleNamespace(queue=self.queue)]}))
        self._stopped = asyncio.Event()
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)  # as Faust's
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

    async def callback(self, message: Any) -> None:
        self.delivered.append(message.offset)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        for offset in self.fetches.pop(0):
            yield TP, SimpleNamespace(topic=TP[0], offset=offset)
        if not self.fetches:
            self._stopped.set()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, delivery: Any, suspended: Any) -> None:
        self.waited_first.append(len(self.delivered))
        suspended.close()
        await delivery

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((start, end))


def drain(consumer: Consumer) -> Consumer:
    asyncio.run(asyncio.wait_for(drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event())), 5))
    return consumer


def test_records_that_can_be_delivered_at_once_are_in_order_and_without_wait_first() -> None:
    consumer = drain(Consumer([[0, 1, 2], [2, 1, 5]]))
    assert consumer.delivered == [0, 1, 2, 2, 5], "one read already is skipped; the last read again is not"
    assert consumer.waited_first == []
    assert consumer.gaps == [(3, 5)], "the offsets never delivered, for the acks to step over"
    assert consumer._read_offset[TP] == 5


def test_a_full_queue_or_a_stopped_flow_goes_faust_s_way() -> None:
    full = Consumer([[0, 1]], queue_room=1)
    full.queue.put_nowait("the one record it has room for")
    assert drain(full).waited_first == [0, 1]
    assert full.delivered == [0, 1]
    stopped = drain(Consumer([[0]], flow_active=False))
    assert (stopped.waited_first, stopped.delivered) == ([0], [0])
