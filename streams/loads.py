"""Loading assigned partitions ahead of their first event, one at a time.

A worker that is assigned partitions rebuilds each one's state from the changelog and re-writes its
positions to the cache (``Engine._load_partition``). Waiting for a partition's first event to do that
(the agent's first batch, usually its clock tick) left a worker that reported itself ready while it
was still loading, and a partition without traffic unloaded until its tick arrived. Here a load starts
as soon as Faust has restored the table (``on_rebalance_complete``), and again on the engine's tick
for any assigned partition still without a state (a load that failed, or one a rebalance cut short);
the agent awaits the load of a partition it has events for instead of starting its own.

Loads run one at a time: they are CPU-bound on one event loop, and run side by side they would all
finish late together instead of one after another. Each is tagged with the rebalance generation it
started in (``Engine.rebalances``); the load itself checks the generation at every await and installs
nothing once it moved on, and a later generation starts a load of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

#: ``load(partition, generation)``: rebuild and install the partition's state unless ``generation`` is
#: no longer current
Load = Callable[[int, int], Awaitable[None]]


class Loads:
    def __init__(self, load: Load) -> None:
        self._load = load
        self._tasks: dict[int, tuple[int, asyncio.Task[None]]] = {}  # partition → (generation, its load)
        self._one_at_a_time = asyncio.Lock()

    def start(self, partition: int, generation: int) -> asyncio.Task[None]:
        """The load of ``partition`` in ``generation``: the one under way (or done), else a new one. A load
        that failed is started again."""
        known = self._tasks.get(partition)
        if known is not None and known[0] == generation and not _failed(known[1]):
            return known[1]
        task = asyncio.get_running_loop().create_task(self._run(partition, generation),
                                                      name=f"load partition {partition}")
        task.add_done_callback(_report)
        self._tasks[partition] = (generation, task)
        return task

    def under_way(self) -> set[int]:
        """Partitions whose load has not finished."""
        return {partition for partition, (_, task) in self._tasks.items() if not task.done()}

    def forget(self, partitions: Iterable[int]) -> None:
        """Revoked partitions: their loads (if any) find the generation moved on and install nothing."""
        for partition in partitions:
            self._tasks.pop(partition, None)

    def cancel(self) -> None:
        """On shutdown."""
        for _, task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _run(self, partition: int, generation: int) -> None:
        async with self._one_at_a_time:
            await self._load(partition, generation)


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed (tried again on the next tick): %r", task.get_name(), exc, exc_info=exc)
