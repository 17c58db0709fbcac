"""How the product's background tasks stop: the API's listeners on the cache's channels and pollers, the
simulator's loads, samplers and in-flight requests. Here because what makes it necessary is mostly the
cache client's (below), and both processes use this package."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

#: how often a cancellation is repeated until the task has ended
CANCEL_AGAIN_S = 0.5


async def stop(tasks: Collection[asyncio.Task[Any]], *, raise_errors: bool = True) -> None:
    """Cancel ``tasks`` and wait until every one has ended (a task's own error is raised, unless not
    ``raise_errors``).

    redis-py can swallow a cancellation that lands inside ``PubSub.get_message(timeout=…)`` or while a
    connection closes, and Python 3.11's ``asyncio.wait_for`` one that lands as the awaited call
    completes: a task cancelled once then goes on for good (seen in about one close in twenty, as a test
    that hung at the API's shutdown, and as a simulation that never ended: its once-a-second sampler,
    cancelled inside ``wait_for``, sampled on), so the cancellation is repeated until it ends.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
    for task in tasks if raise_errors else ():
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
