"""Partition loads ahead of their first event (streams/loads.py): one at a time, shared, retried."""

from __future__ import annotations

import asyncio

import pytest

from streams.loads import Loads


class Loader:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[int, int]] = []
        self.running = 0
        self.most_at_once = 0
        self.fail = fail  # the first ``fail`` calls raise

    async def __call__(self, partition: int, generation: int) -> None:
        self.calls.append((partition, generation))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0.001)
            if len(self.calls) <= self.fail:
                raise RuntimeError("the store did not answer")
        finally:
            self.running -= 1


async def test_one_load_at_a_time_and_one_per_partition_and_generation() -> None:
    loader = Loader()
    loads = Loads(loader)
    tasks = [loads.start(partition, 1) for partition in (0, 1, 2)]
    assert loads.start(1, 1) is tasks[1]  # the agent awaits the load under way, it does not start its own
    assert loads.under_way() == {0, 1, 2}
    await asyncio.gather(*tasks)
    assert loader.calls == [(0, 1), (1, 1), (2, 1)]
    assert loader.most_at_once == 1
    assert loads.start(0, 1) is tasks[0]  # done: not loaded again in the same generation
    await loads.start(0, 2)  # a rebalance later: loaded again
    assert loader.calls[-1] == (0, 2)
    assert loads.under_way() == set()


async def test_a_failed_load_raises_to_its_awaiter_and_is_started_again() -> None:
    loader = Loader(fail=1)
    loads = Loads(loader)
    with pytest.raises(RuntimeError):
        await loads.start(3, 1)
    await loads.start(3, 1)
    assert loader.calls == [(3, 1), (3, 1)]


async def test_forgotten_and_cancelled_loads() -> None:
    loader = Loader()
    loads = Loads(loader)
    first = loads.start(4, 1)
    loads.forget([4])
    assert loads.start(4, 1) is not first  # revoked and assigned again: a load of its own
    loads.cancel()
    assert loads.under_way() == set()
    await asyncio.sleep(0.01)
