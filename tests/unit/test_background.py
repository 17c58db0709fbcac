"""The API's background tasks stop even when a library swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from api.background import stop


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
