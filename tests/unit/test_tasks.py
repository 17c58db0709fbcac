"""Background tasks (the API's, the simulator's) stop even when a library swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from cacheclient.tasks import stop


async def _swallows_one_cancellation(swallowed: list[int]) -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # as redis-py's PubSub sometimes does
            if swallowed:
                raise
            swallowed.append(1)


async def test_a_task_that_swallows_a_cancellation_still_stops() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(_swallows_one_cancellation(swallowed))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop([task]), timeout=5)
    assert task.cancelled()
    assert swallowed == [1]


async def test_a_task_error_is_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await stop([task])


async def test_errors_can_be_let_go_once_every_task_has_ended() -> None:
    """The simulator's in-flight requests at the end of a run: their outcome no longer matters."""
    async def fails() -> None:
        raise RuntimeError("boom")

    swallowed: list[int] = []
    tasks = [asyncio.create_task(fails()), asyncio.create_task(_swallows_one_cancellation(swallowed))]
    await asyncio.sleep(0)
    await asyncio.wait_for(stop(tasks, raise_errors=False), timeout=5)
    assert all(task.done() for task in tasks)
