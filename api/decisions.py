"""Reservation decisions as the workers publish them: one shared subscription per app.

The owning worker writes every decision to ``ats:v1:resv:{id}`` and then publishes it on
``ats:v1:decisions``. A request that needs a decision registers a waiter *before* it produces its
command and checks the key *after* registering, so a decision is never missed: either it was
published after the subscription was live (the listener delivers it) or it was written before the
check (the key has it). One listener task dispatches every message to the waiters of its
reservation id; requests never open subscriptions of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from availability import topics
from cacheclient import Cache, CacheErrors
from cacheclient.tasks import stop

log = logging.getLogger(__name__)

Accept = Callable[[dict[str, Any]], bool]


class Waiter:
    def __init__(self, accept: Accept) -> None:
        self.accept = accept
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def offer(self, decision: dict[str, Any]) -> None:
        if not self.future.done() and self.accept(decision):
            self.future.set_result(decision)


class Decisions:
    """The app's listener on the decisions channel; ``waiting(id)`` registers interest in one id."""

    def __init__(self, cache: Cache, *, retry_seconds: float = 0.5) -> None:
        self._cache = cache
        self._retry = retry_seconds
        self._waiters: dict[str, list[Waiter]] = defaultdict(list)
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="decisions-listener")

    async def close(self) -> None:
        """Stop the listener (:func:`cacheclient.tasks.stop`; the loop also checks a flag)."""
        if self._task is None:
            return
        self._closing = True
        await stop([self._task])
        self._task = None

    async def live(self, within: float) -> bool:
        """Wait until the subscription is confirmed (``False`` if the cache does not answer in time)."""
        try:
            await asyncio.wait_for(self._live.wait(), within)
        except TimeoutError:
            return False
        return True

    @contextlib.asynccontextmanager
    async def waiting(self, reservation_id: str, accept: Accept = lambda _: True) -> AsyncIterator[Waiter]:
        waiter = Waiter(accept)
        self._waiters[reservation_id].append(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(reservation_id)
            if waiters is not None:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[reservation_id]

    async def current(self, reservation_id: str) -> dict[str, Any] | None:
        """The cached decision of a reservation, or ``None`` (raises the cache's errors)."""
        raw = await self._cache.get(topics.reservation_key(reservation_id))
        return orjson.loads(raw) if raw else None

    def dispatch(self, raw: bytes) -> None:
        try:
            decision = orjson.loads(raw)
            reservation_id = decision["reservation_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignored a malformed message on %s", topics.DECISIONS_CHANNEL)
            return
        for waiter in list(self._waiters.get(reservation_id, ())):
            waiter.offer(decision)

    async def _run(self) -> None:
        while not self._closing:
            pubsub = self._cache.pubsub()
            try:
                await pubsub.subscribe(topics.DECISIONS_CHANNEL)
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._live.set()
                        await self._recheck()
                    elif message["type"] == "message":
                        self.dispatch(message["data"])
            except CacheErrors as exc:
                if self._live.is_set():
                    log.warning("decisions subscription lost: %s; resubscribing", exc)
                self._live.clear()
                await asyncio.sleep(self._retry)
            except Exception:  # a bug here must not leave every reservation waiting for nothing
                log.exception("decisions listener failed; resubscribing")
                self._live.clear()
                await asyncio.sleep(self._retry)
            finally:
                with contextlib.suppress(*CacheErrors):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _recheck(self) -> None:
        """After a (re)subscription, look up the keys of everyone waiting: nothing published in the gap
        is lost."""
        for reservation_id in list(self._waiters):
            decision = await self.current(reservation_id)
            if decision is not None:
                for waiter in list(self._waiters.get(reservation_id, ())):
                    waiter.offer(decision)
