"""streams.take.batches: what a batch takes from the queue, and when it waits. Faust's side (the stream,
its app, the consumer that tracks and acknowledges messages) is stood in for by plain objects with the
attributes the take reads; the queue is a real asyncio queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.take import batches

TOPIC = "pos.sales"


class Stream:
    def __init__(self, generation: int = 1) -> None:
        self.queue: ThrowableQueue[Any] = ThrowableQueue(flow_control=FlowControlEvent())  # Faust's channels'
        self.tracked: list[int] = []
        self.acked: list[int] = []
        consumer = SimpleNamespace(track_message=lambda message: self.tracked.append(message.offset))
        self.app = SimpleNamespace(consumer=consumer, consumer_generation_id=generation,
                                   flow_control=SimpleNamespace(is_active=lambda: True),
                                   topics=SimpleNamespace(acking_topics={TOPIC}),
                                   monitor=SimpleNamespace(stream_inbound_time={}))
        self.channel = _Channel(self.queue)

    async def ack(self, event: Any) -> bool:
        self.acked.append(event.message.offset)
        return True

    def put(self, offset: int, size: int = 100, generation: int = 1, partition: int = 0) -> None:
        self.queue.put_nowait(SimpleNamespace(message=SimpleNamespace(
            topic=TOPIC, tp=(TOPIC, partition), offset=offset, serialized_value_size=size, generation_id=generation,
            tracked=False)))


class _Channel:
    def __init__(self, queue: ThrowableQueue[Any]) -> None:
        self.queue = queue

    def __aiter__(self) -> _Channel:  # a topic iterated: the take reads its queue, never its __anext__
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


def offsets(batch: list[Any]) -> list[int]:
    return [event.message.offset for event in batch]


async def take(stream: Stream, **options: Any) -> AsyncIterator[list[Any]]:
    defaults: dict[str, Any] = {"max_size": 5_000, "window_s": 0.0, "behind": lambda: False}
    async for batch in batches(stream, **{**defaults, **options}):  # type: ignore[arg-type]
        yield batch


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 5))


def test_a_batch_is_what_the_queue_holds_up_to_the_most_events() -> None:
    async def scenario() -> list[list[int]]:
        stream = Stream()
        for offset in range(7):
            stream.put(offset)
        taken = take(stream, max_size=3)
        return [offsets(await anext(taken)) for _ in range(3)]

    assert run(scenario()) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_stops_at_its_bytes_and_takes_at_least_one_event() -> None:
    async def scenario() -> list[list[int]]:
        stream = Stream()
        for offset, size in enumerate([400, 400, 400, 400, 5_000, 10]):
            stream.put(offset, size)
        taken = take(stream, max_bytes=1_000)
        return [offsets(await anext(taken)) for _ in range(3)]

    # 400 + 400 is under 1,000: a third is taken; 5,000 alone is over it, and still a batch
    assert run(scenario()) == [[0, 1, 2], [3, 4], [5]]


@pytest.mark.parametrize("behind", [False, True])
def test_only_a_worker_behind_waits_the_window_for_more(behind: bool) -> None:
    async def scenario() -> list[int]:
        stream = Stream()
        stream.put(0)
        asyncio.get_running_loop().call_later(0.02, stream.put, 1)
        return offsets(await anext(take(stream, window_s=0.2, behind=lambda: behind)))

    assert run(scenario()) == ([0, 1] if behind else [0])


def test_events_fetched_before_the_rebalance_are_acknowledged_not_taken() -> None:
    async def scenario() -> tuple[list[int], Stream]:
        stream = Stream(generation=2)
        stream.put(0, generation=1)
        stream.put(1, generation=2)
        return offsets(await anext(take(stream))), stream

    batch, stream = run(scenario())
    assert batch == [1]
    assert stream.tracked == [0, 1]  # tracked as Faust's iterator does, so the ack of the skipped one counts
    assert stream.acked == [0]


def test_each_partition_taken_from_is_noted_for_faust_s_stall_check() -> None:
    """Faust's consumer logs an ERROR for a partition with unfetched records whose stream never took an
    event (``Monitor.stream_inbound_time``), as a stalled stream."""
    async def scenario() -> dict[Any, float]:
        stream = Stream()
        stream.put(0, partition=3)
        stream.put(1, partition=5)
        before = time.monotonic()
        await anext(take(stream))
        return {tp: at - before for tp, at in stream.app.monitor.stream_inbound_time.items()}

    noted = run(scenario())
    assert set(noted) == {(TOPIC, 3), (TOPIC, 5)}
    assert all(0 <= since < 5 for since in noted.values())


@pytest.mark.parametrize("queued", [0, 2])
def test_a_stopping_app_ends_the_batches_and_other_errors_are_raised(queued: int) -> None:
    """Faust stops its channels' iterators by throwing StopAsyncIteration into their queues: the take
    ends there (raised on, it became a RuntimeError and a logged crash of the agent at every shutdown)."""
    async def scenario(error: BaseException) -> list[list[int]]:
        stream = Stream()
        for offset in range(queued):
            stream.put(offset)
        await stream.queue.throw(error)
        return [offsets(batch) async for batch in take(stream)]

    assert run(scenario(StopAsyncIteration())) == []
    with pytest.raises(KeyError):
        run(scenario(KeyError("the consumer's error")))
