"""Cache epochs: how a worker notices that the cache lost its positions, and how the API knows.

Redis holds no data the workers cannot rebuild, so nothing persists it; a ``FLUSHALL``, a restart or an
eviction empties it while the workers run on. Each owner therefore keeps one field per partition in
:data:`availability.topics.CACHE_EPOCHS_KEY`, written **in the same pipeline as a whole snapshot** of
the partition's positions, after them. A field present vouches that every position of its partition
was written after the cache last lost data; the API reads the fields of the partitions it answers for
in the same round trip as the positions and answers 503 while one is missing (never a wrong zero).

The protocol, between the engine's tick (a timer) and its agent (the only task that writes the cache):

* the tick reads the fields of the partitions this worker owns (:meth:`CacheEpochs.check`); a missing
  one is forgotten from :attr:`CacheEpochs.confirmed`;
* the agent, right before it drains a batch, re-marks every position of each partition it is about to
  flush that is not confirmed (:meth:`CacheEpochs.renew`, no await in between), so that flush carries a
  whole snapshot; its cache pipeline then sets the fields of those partitions (:meth:`CacheEpochs.mark`)
  and, once executed, confirms them. A partition taken over (loaded) is not confirmed either, so a
  new owner always writes its whole partition once.

A cache write that fails unconfirms the partitions it carried: they are snapshotted whole again at the
next flush, so nothing the failed write held is missed when the cache comes back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from availability import topics
from availability.shard import PartitionState
from cacheclient import Cache
from cacheclient import CacheErrors as CacheErrors  # what the engine catches, re-exported

log = logging.getLogger(__name__)

#: what a cache call raises when Redis does not answer


class CacheEpochs:
    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.confirmed: set[int] = set()  # partitions whose whole snapshot and field this worker wrote
        self.renewed = 0  # whole-partition snapshots written because the cache had lost one (or on load)
        self.reachable = True  # false from a failed write until a check answers: no whole snapshots meanwhile

    def renew(self, states: Mapping[int, PartitionState]) -> list[int]:
        """Mark every position of the unconfirmed partitions among ``states`` for the cache; call right
        before draining them (no await in between). Returns those partitions."""
        if not self.reachable:
            return []
        fresh = [partition for partition in states if partition not in self.confirmed]
        for partition in fresh:
            states[partition].resnapshot()
        return fresh

    def mark(self, pipe: Any, partitions: Iterable[int]) -> None:
        """Add the fields of ``partitions`` to a pipeline, after their positions."""
        stamp = f"{self.worker_id}@{int(time.time() * 1000)}"
        fields = {str(partition): stamp for partition in partitions}
        if fields:
            pipe.hset(topics.CACHE_EPOCHS_KEY, mapping=fields)

    def written(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        self.confirmed.update(partitions)
        self.renewed += len(partitions)
        self.reachable = True

    def failed(self, partitions: Iterable[int]) -> None:
        """A cache write failed: ``partitions`` are written whole once a check finds the cache again."""
        self.confirmed.difference_update(partitions)
        self.reachable = False

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns (revoked)."""
        self.confirmed.difference_update(partitions)

    async def check(self, cache: Cache, owned: list[int]) -> None:
        """Forget the confirmed partitions whose field the cache no longer has (one round trip); after a
        failed write, also find out whether the cache answers again."""
        watched = sorted(self.confirmed.intersection(owned))
        if not owned or (not watched and self.reachable):
            return
        try:
            values = await cache.hmget(topics.CACHE_EPOCHS_KEY, [str(p) for p in owned])
        except CacheErrors as exc:
            if self.reachable:
                log.warning("cache unreachable while checking its epochs: %s", exc)
            self.reachable = False
            return
        if not self.reachable:
            log.warning("the cache answers again: every partition this worker owns is written whole")
            self.reachable = True
        found = dict(zip(owned, values, strict=True))
        lost = [partition for partition in watched if found[partition] is None]
        if lost:
            log.warning("the cache lost the snapshot of partition(s) %s (flushed or restarted): re-writing them",
                        lost)
            self.confirmed.difference_update(lost)
