"""When each location the worker owns last spoke (:mod:`availability.silence`), kept beside the states.

The engine calls :meth:`LocationClocks.heard` once per applied leg (a dict lookup and two comparisons;
never per line), and observes each input event's lateness (arrival minus business time) once.
The changed locations ride the engine's pipelined cache write (:meth:`LocationClocks.write`), one
``HSET`` of ``ats:v1:locations`` per write, and a partition written whole (taken over, or the cache
lost it) writes all its locations again.

Arrival time is the input record's Kafka timestamp, not the worker's clock when it applies it: a
replay after a restart, or a worker catching up on a backlog, would otherwise make every location it
replays look as if it had just spoken. A record without a timestamp, or one stamped in the future by
a skewed producer clock, counts as arriving when it is applied. A leg re-routed to its owner
(``ats.routed``) arrives when it was re-routed (milliseconds later).

The times are not in the changelog: a worker that loads a partition reads its locations back from the
cache (:meth:`LocationClocks.load`). A location the cache lost too is known again when it next speaks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import Redis

from availability import silence, topics
from availability.silence import Heard, TradingHours

from .cacheepoch import CacheErrors

log = logging.getLogger(__name__)


class LocationClocks:
    def __init__(self, owner: Callable[[str], int], *, silent_after_s: int, hours: TradingHours) -> None:
        self.owner = owner
        self.silent_after_s = silent_after_s
        self.hours = hours
        self.heard_by: dict[int, dict[str, Heard]] = {}  # partition → location → times
        self.changed: dict[str, Heard] = {}  # not yet in a cache write

    def heard(self, partition: int, location_id: str, business_ms: int, arrival_ms: int) -> None:
        known = self.heard_by.setdefault(partition, {})
        last = known.get(location_id)
        if last is not None and last.business_ms >= business_ms and last.arrival_ms >= arrival_ms:
            return
        times = Heard(business_ms, arrival_ms) if last is None else last.merge(Heard(business_ms, arrival_ms))
        known[location_id] = self.changed[location_id] = times

    def write(self, pipe: Any, whole: Iterable[int]) -> None:
        """Add the changed locations (and every location of the ``whole`` partitions) to ``pipe``."""
        fields = {location: silence.encode(times) for location, times in self.changed.items()}
        for partition in whole:
            known = self.heard_by.get(partition, {})
            fields.update((location, silence.encode(times)) for location, times in known.items())
        self.changed = {}
        if fields:
            pipe.hset(topics.LOCATIONS_KEY, mapping=fields)

    async def load(self, cache: Redis, partition: int) -> None:
        """Read back the times of the partition's locations (a restart on an empty disk keeps them). A cache
        that does not answer leaves them to be heard again."""
        try:
            stored = await cache.hgetall(topics.LOCATIONS_KEY)
        except CacheErrors as exc:
            log.warning("partition %d: when its locations last spoke is not read back (%s): known again as they "
                        "speak", partition, exc)
            return
        known = self.heard_by.setdefault(partition, {})
        for raw_location, raw in stored.items():
            location_id = raw_location.decode() if isinstance(raw_location, bytes) else raw_location
            times = silence.decode(raw)
            if times is None or self.owner(location_id) != partition:
                continue
            last = known.get(location_id)
            known[location_id] = times if last is None else last.merge(times)

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.heard_by.pop(partition, None)

    def silent(self, now_ms: int, partitions: Iterable[int]) -> int:
        """Silent locations among those of ``partitions``, at ``now_ms``."""
        return sum(silence.status(times, now_ms, silent_after_s=self.silent_after_s, hours=self.hours).silent
                   for partition in partitions for times in self.heard_by.get(partition, {}).values())
