"""Answers of hot SKUs kept in the API's memory, dropped when a worker says their positions changed.

A worker publishes the SKUs each cache write changed on :data:`availability.topics.CHANGED_CHANNEL`, in
the same pipeline as the position hashes and after them (``streams/engine.py``, ``_write_cache``): by the
time this process reads the message, Redis already answers with the new positions. What is kept per SKU
is its whole hash (every location), and the answer bytes rendered from it per scope asked.

Kept answers are served only while all of this holds, else every read goes to Redis as before:

* **subscribed**: the subscription's confirmation has been read on a connection that is still up. A
  lost connection clears everything (messages may have been missed) and keeps clearing until a new
  subscription is confirmed; that connection never retries silently (redis-py would resubscribe
  behind our back and lose what was published meanwhile). A ``PING`` goes down the subscription every
  :data:`PING_S`, and something must have come back within :data:`HEARD_MAX_AGE_S`: a connection that
  went silent (half-open after a network fault) stops the kept answers as a dropped one does.
* **every cache epoch present**, read at most :data:`EPOCHS_MAX_AGE_S` ago (:func:`watch_epochs` polls
  them every :data:`EPOCHS_POLL_S`): a cache that lost its data (``FLUSHALL``, restart) is seen within
  one poll, everything kept is dropped, and reads answer 503 from Redis as before
  (``streams/cacheepoch.py``). A changed epoch (a partition written whole again) drops everything too.

A read that misses takes a **generation** before it goes to Redis; anything dropped meanwhile (a change
message, a clear) moves the generation on, and a read that comes back under another generation is
answered but not kept: it may have read the positions before the change its message announced.
Whatever kept a stale answer by mistake (a worker that does not publish) is bounded by
:data:`MAX_AGE_S`.

A kept answer served when it is over :data:`REFRESH_AGE_S` old is **due**: it is still served, and read
again in the background (``api/answers.py``, ``refresh_kept``), so a hot SKU's answer never ages out
on a request's path. Aging out there cost every request for it a round trip to Redis at once: under
``benchmarks.reads`` ~3,600 reads per 10 s, and a p99 of 10-24 ms against 5.5-7.5 ms without them. A read
of a SKU that is already under way (:attr:`AnswerCache.reads`) is joined, not repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from availability import topics, wire
from cacheclient import Cache, CacheErrors

log = logging.getLogger(__name__)

#: how often the cache epochs are read, and how old the last read may be for kept answers to be served
EPOCHS_POLL_S = 0.05
EPOCHS_MAX_AGE_S = 0.5
#: how often the subscription is pinged when quiet, and how long it may stay silent for kept answers to be served
PING_S = 0.1
HEARD_MAX_AGE_S = 0.5
#: the longest an answer is kept, changes or not: a safety net for a worker that does not publish
MAX_AGE_S = 10.0
#: a kept answer served when it is older than this is read again in the background (AnswerCache.take_due)
REFRESH_AGE_S = MAX_AGE_S / 2
#: pause before subscribing again after the subscription was lost
RESUBSCRIBE_S = 0.2
#: rendered scopes kept per SKU (the default answer, each channel, a few location lists)
SCOPES_PER_SKU = 8

#: a scope of an answer: (channel name, the asked locations) as the request named them
Scope = tuple[str | None, tuple[str, ...] | None]
#: a SKU's positions: (location_id, its cache value), the values as tuples. Tuples of numbers drop out of
#: the garbage collector's view after its first pass; lists stay in it, and the 40k positions kept
#: of 2,000 SKUs at 20 locations made each full collection ~80 ms, an answer's p99 under load.
Positions = list[tuple[str, tuple[int, ...]]]



@dataclass(slots=True)
class Kept:
    """One SKU's positions (sorted by location) as read from its hash, and answers rendered from them."""

    positions: Positions
    read_at: float
    by_location: dict[str, tuple[int, ...]] = field(init=False)
    #: scope → the answer's bytes before and after its ``as_of`` value
    rendered: dict[Scope, tuple[bytes, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_location = dict(self.positions)

    def in_scope(self, locations: list[str] | None) -> Positions:
        if locations is None:
            return self.positions
        found = self.by_location
        return [(location, found[location]) for location in locations if location in found]


class AnswerCache:
    def __init__(self, capacity: int, partitions: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.partitions, self.clock = capacity, partitions, clock
        self.kept: OrderedDict[str, Kept] = OrderedDict()
        self.generation = 0
        self.subscribed = False
        self.heard_at = float("-inf")  # when the subscription last delivered anything (a message, a pong)
        self.epochs: dict[Any, Any] | None = None  # the last complete read of the cache epochs
        self.epochs_read_at = float("-inf")
        self.due: dict[str, None] = {}  # kept SKUs served past REFRESH_AGE_S, in the order served
        #: SKU → a read of it under way: (the generation it started under, its task, the SKU's index in
        #: the task's result), joined by a read of the same SKU under the same generation (api.answers.read_kept)
        self.reads: dict[str, tuple[int, asyncio.Future[list[Kept]], int]] = {}

    def usable(self) -> bool:
        now = self.clock()
        return (self.subscribed and self.epochs is not None and now - self.epochs_read_at <= EPOCHS_MAX_AGE_S
                and now - self.heard_at <= HEARD_MAX_AGE_S)

    def get(self, sku: str) -> Kept | None:
        return self.get_many([sku])[0]

    def get_many(self, skus: list[str]) -> list[Kept | None]:
        """What is kept of each SKU (``None``: not kept, or kept too long); one clock read for them all.
        An entry older than :data:`REFRESH_AGE_S` is returned and becomes due (:meth:`take_due`)."""
        found: list[Kept | None] = []
        now = self.clock()
        kept, oldest, stale = self.kept, now - MAX_AGE_S, now - REFRESH_AGE_S
        for sku in skus:
            entry = kept.get(sku)
            if entry is not None:
                if entry.read_at < oldest:
                    del kept[sku]
                    entry = None
                else:
                    kept.move_to_end(sku)
                    if entry.read_at < stale:
                        self.due[sku] = None
            found.append(entry)
        return found

    def take_due(self) -> list[str]:
        """The kept SKUs served past :data:`REFRESH_AGE_S` since the last call, to be read again."""
        due, self.due = self.due, {}
        return [sku for sku in due if sku in self.kept]

    def keep(self, generation: int, sku: str, positions: Positions) -> Kept:
        """The SKU's positions as a read that started under ``generation`` found them; kept only if nothing
        was dropped since and kept answers are being served. A read that found what is kept already (a
        refresh, mostly) renews the kept entry and its rendered answers."""
        now = self.clock()
        if generation != self.generation or not self.usable() or not self.capacity:
            return Kept(positions, now)
        entry = self.kept.get(sku)
        if entry is not None and entry.positions == positions:
            entry.read_at = now
        else:
            entry = self.kept[sku] = Kept(positions, now)
        self.kept.move_to_end(sku)
        if len(self.kept) > self.capacity:
            self.kept.popitem(last=False)
        return entry

    def changed(self, skus: list[str] | None) -> None:
        """A worker changed these SKUs' positions (``None``: any SKU)."""
        self.generation += 1
        if skus is None:
            self.kept.clear()
            return
        for sku in skus:
            self.kept.pop(sku, None)

    def clear(self) -> None:
        self.generation += 1
        self.kept.clear()
        self.due.clear()

    # ---- the subscription ----------------------------------------------------------------------
    def subscription_confirmed(self) -> None:
        self.clear()  # whatever was published before it was missed
        self.subscribed = True
        self.heard()

    def heard(self) -> None:
        """The subscription delivered something: it is alive."""
        self.heard_at = self.clock()

    def subscription_lost(self) -> None:
        self.subscribed = False
        self.clear()

    # ---- the cache epochs ----------------------------------------------------------------------
    def epochs_read(self, epochs: dict[Any, Any]) -> None:
        """The cache epochs as just read: all present and unchanged keeps what is kept."""
        complete = all(str(partition).encode() in epochs for partition in range(self.partitions))
        if not complete or epochs != self.epochs:
            self.clear()
        self.epochs = epochs if complete else None
        self.epochs_read_at = self.clock()

    def epochs_unreadable(self) -> None:
        self.epochs = None
        self.clear()


async def watch_changes(subscriber: Cache, answers: AnswerCache) -> None:
    """Subscribe to the workers' change messages, and drop what they name; forever (cancel it)."""
    warned = False
    while True:
        pubsub = subscriber.pubsub()
        try:
            await pubsub.subscribe(topics.CHANGED_CHANNEL)
            while True:
                message: dict[str, Any] | None = await pubsub.get_message(timeout=PING_S)
                if message is None:
                    await pubsub.ping()
                    continue
                answers.heard()
                if message["type"] == "message":
                    answers.changed(wire.changed_skus(message["data"]))
                elif message["type"] == "subscribe":
                    answers.subscription_confirmed()
                    if warned:
                        log.warning("subscribed again to %s: serving kept answers again", topics.CHANGED_CHANNEL)
                    warned = False
        except CacheErrors as exc:
            answers.subscription_lost()
            if not warned:
                log.warning("lost the subscription to %s (%s): every read goes to the cache until it is back",
                            topics.CHANGED_CHANNEL, exc)
            warned = True
        finally:
            answers.subscription_lost()
            with contextlib.suppress(*CacheErrors):
                await pubsub.aclose()
        await asyncio.sleep(RESUBSCRIBE_S)


async def watch_epochs(cache: Cache, answers: AnswerCache) -> None:
    """Read the cache epochs every :data:`EPOCHS_POLL_S`; forever (cancel it)."""
    while True:
        try:
            answers.epochs_read(await cache.hgetall(topics.CACHE_EPOCHS_KEY))
        except CacheErrors:
            answers.epochs_unreadable()
        await asyncio.sleep(EPOCHS_POLL_S)
