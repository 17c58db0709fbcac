"""The engine's batches, taken from its stream's queue as they are there, not after a window.

Faust's ``Stream.noack_take(max, within)`` waits ``within`` on every turn unless the buffer fills, and its
buffer is filled one event at a time through the stream's per-event path (a turn of the event loop, the
sensors and an awaited processor per event). So a hold that arrives alone waited out the window before
its batch began, and every batch, however busy the worker, began with a wait.

:func:`batches` takes what the stream's queue holds when the previous batch is done (up to ``max_size``)
and starts at once, unless the worker is behind (its consumer lag says more is fetched than applied):
then it waits up to ``window_s`` after the batch's first event for more. Faust's consumer hands the
queue its fetched records a few at a time, between turns of the agent, so without that wait a worker
working off a backlog took batches of one or two events, and a batch's fixed costs (the cache write,
the outputs' delivery) per event: 60k one-line events at ~2,000/s against ~6,200/s with the wait.
Live traffic (a hold, a probe, a till's sale) does not wait for a window.

Per event it does what Faust's iterator does before it yields one: skip (and acknowledge) an event
fetched before the current rebalance or while the stream is paused, track the message as
unacknowledged, so Faust commits its offset only once the engine acknowledges it (``stream.ack``), and
note when its partition's stream last took an event (``Monitor.stream_inbound_time``). Faust's consumer
reads that to tell a stalled stream: without it, a worker up for ``stream_processing_timeout`` logged
"Stream has not started processing" as an ERROR for every partition with a record not yet fetched
(the clock lane's, every tick), and the soak counts ERROR records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from faust.types import EventT

#: a batch stops taking events once their payloads reach this many bytes (~400 POS envelopes of 50 lines,
#: 35 of 1,000): what the queue holds can be 10,000 events (``stream_buffer_maxsize``), and a batch of
#: thousands of envelopes of 1,000 lines held every line's changes at once: a worker loading 1M positions
#: settled at 3.4 GiB RSS, against 0.7 GiB with this bound (``benchmarks.memory``). The price is in bulk
#: loads: the first worker of ``benchmarks.recovery`` applied its 1M positions in 61-69 s, against 49 s
#: with Faust's take (batches of up to ~480 events, 3.6 GiB); a 4 MiB bound gave 65 s and 1.2 GiB.
#: Treating a full batch as "behind" (the flush interval stretched) gave 16 s for 300k positions instead of
#: 19-21 s, but 1.8 GiB at 1M positions: each partition flushes ~30 µs per new position either way.
BATCH_BYTES = 1 << 20


async def batches(stream: faust.StreamT[Any], max_size: int, window_s: float, behind: Callable[[], bool],
                  max_bytes: int = BATCH_BYTES) -> AsyncIterator[list[EventT[Any]]]:
    """Lists of at most ``max_size`` events and about ``max_bytes`` of payload (at least one event), in the
    order the consumer delivered them."""
    app = stream.app
    channel: Any = aiter(stream.channel)  # an iterator of the agent's topics: the conductor delivers to it
    queue = channel.queue
    consumer = app.consumer
    flow_control = app.flow_control
    acking_topics = app.topics.acking_topics
    inbound = app.monitor.stream_inbound_time
    loop = asyncio.get_running_loop()
    while True:
        # the queue raises what was thrown into it, as Faust's iterator does; a stopping app throws
        # StopAsyncIteration to end its channels' iterators (a batch taken meanwhile is not acknowledged)
        try:
            first = await queue.get()
            started = loop.time()
            taken = [first]
            size = _take_queued(queue, taken, first.message.serialized_value_size, max_size, max_bytes)
            if window_s > 0 and len(taken) < max_size and size < max_bytes and behind():
                await asyncio.sleep(max(0.0, window_s - (loop.time() - started)))
                _take_queued(queue, taken, size, max_size, max_bytes)
        except StopAsyncIteration:
            return
        batch: list[EventT[Any]] = []
        active, generation = flow_control.is_active(), app.consumer_generation_id
        now = time.monotonic()  # the monitor's clock
        for event in taken:
            message = event.message
            if message.topic in acking_topics and not message.tracked:
                message.tracked = True
                consumer.track_message(message)
            if not active or message.generation_id != generation:
                await stream.ack(event)  # fetched before a rebalance (or while paused): its new owner reads it
                continue
            inbound[message.tp] = now
            batch.append(event)
        if batch:
            yield batch


def _take_queued(queue: Any, taken: list[EventT[Any]], size: int, max_size: int, max_bytes: int) -> int:
    """Append to ``taken`` (holding ``size`` bytes of payload) what ``queue`` holds now, up to the bounds;
    returns the bytes of payload ``taken`` then holds."""
    while len(taken) < max_size and size < max_bytes and not queue.empty():
        event = queue.get_nowait()
        taken.append(event)
        size += event.message.serialized_value_size
    return size
