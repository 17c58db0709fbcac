"""The API's background tasks (listeners on the cache's channels, pollers) and how they stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

#: how often a cancellation is repeated until the task has ended
CANCEL_AGAIN_S = 0.5


async def stop(tasks: Collection[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended (a task's own error is raised).

    redis-py can swallow a cancellation that lands inside ``PubSub.get_message(timeout=…)`` or while a
    connection closes: a task cancelled once then goes on for good (seen in about one close in twenty,
    and as a test that hung at the API's shutdown), so the cancellation is repeated until it ends.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
