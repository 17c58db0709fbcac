"""Idempotency by ``event_id`` over a time window.

Ids are remembered per *generation* (one flush of a partition); a generation is persisted as one
record and forgotten, all at once, when its first-seen time falls out of the window. So remembering
ids costs one state record per flush, not one per event.

An id is remembered as its 64-bit hash (:func:`id_hash`), not as its string: in memory each costs
~16 bytes (once in a sorted array for the look-up, once in the generations' log for the expiry; a
dict of strings cost ~107 bytes plus the string). Two different ids with the same hash make the later
one a duplicate, ignored: with ``n`` ids remembered in a partition the chance that any two collide is
about n²/2⁶⁵ (10M ids in one partition over the 7-day window: 3·10⁻⁶; over 8 partitions, 3·10⁻⁷).

An id is remembered while any generation that holds it is within the window (a generation expires when
an :meth:`RecentIds.expire` finds its first-seen time before ``now - window``), whatever order the
generations were restored in.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections.abc import Iterable

#: the hashes are spread by their top bits over this many sorted arrays: an insert or a removal moves a
#: 1/1024th of them (~1,200 at 1.25M ids in a partition)
_SHARD_BITS = 10
_SHIFT = 64 - _SHARD_BITS
#: expired generations are cut from the front of the log once they are this many and half of it
_COMPACT_AFTER = 1_024


def id_hash(key: str) -> int:
    """The 64-bit hash an id (a dedupe key) is remembered by: blake2b, 8 bytes, little-endian."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class RecentIds:
    """The ids applied within the window, by hash (:func:`id_hash`): pending ids (:meth:`add`), sealed into
    a numbered generation at each flush (:meth:`seal`), restored from its record (:meth:`restore`)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._pending: dict[int, None] = {}  # insertion-ordered set of the hashes not yet sealed
        # every hash of a live generation, once per generation holding it, sorted within each shard
        self._shards: dict[int, array[int]] = {}
        # generations in order of first-seen time: number, first-seen time, end of their hashes in the log
        self._numbers: array[int] = array("q")
        self._firsts: array[int] = array("q")
        self._ends: array[int] = array("q")
        self._log: array[int] = array("Q")  # the generations' hashes, one generation after the other
        self._live = 0  # the oldest generation not expired (the ones before it wait to be cut off)
        self._restored: list[tuple[int, int, array[int]]] = []  # (first_ms, generation, hashes) to place

    def __contains__(self, key: str) -> bool:
        return self.seen(id_hash(key))

    def __len__(self) -> int:
        """Remembered ids, an id counted once per generation holding it, pending ones included."""
        self._place()
        return len(self._log) - self._start(self._live) + len(self._pending)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def seen(self, digest: int) -> bool:
        if digest in self._pending:
            return True
        self._place()
        shard = self._shards.get(digest >> _SHIFT)
        if not shard:
            return False
        at = bisect.bisect_left(shard, digest)
        return at < len(shard) and shard[at] == digest

    def add(self, digest: int) -> None:
        self._pending[digest] = None

    def restore(self, generation: int, first_ms: int, hashes: Iterable[int]) -> None:
        """A stored generation (records load in any order: placed on the next look-up)."""
        self._restored.append((first_ms, generation, array("Q", hashes)))

    def seal(self, generation: int, now_ms: int) -> array[int] | None:
        """Close the pending ids into ``generation``; returns their hashes (None when there were none)."""
        if not self._pending:
            return None
        hashes = array("Q", self._pending)
        self._pending = {}
        self._restored.append((now_ms, generation, hashes))
        self._place()
        return hashes

    def expire(self, now_ms: int) -> list[int]:
        """Forget generations older than the window; returns the generations dropped."""
        self._place()
        cutoff = now_ms - self.window_ms
        firsts, live, dropped = self._firsts, self._live, []
        while live < len(firsts) and firsts[live] < cutoff:
            for digest in self._log[self._start(live):self._ends[live]]:
                shard = self._shards[digest >> _SHIFT]
                del shard[bisect.bisect_left(shard, digest)]
            dropped.append(self._numbers[live])
            live += 1
        self._live = live
        if live >= _COMPACT_AFTER and 2 * live >= len(firsts):
            self._compact()
        return dropped

    def _start(self, index: int) -> int:
        """Where generation ``index``'s hashes begin in the log."""
        return self._ends[index - 1] if index else 0

    def _place(self) -> None:
        """Take the generations sealed or restored since the last call into the shards and into the log (in
        order of first-seen time)."""
        if not self._restored:
            return
        restored, self._restored = sorted(self._restored, key=_by_time), []
        self._index(restored)
        if self._live < len(self._firsts) and restored[0][0] < self._firsts[-1]:
            restored = self._reorder(restored)  # restored out of order, or a clock stepped back: rare
        for first_ms, generation, hashes in restored:
            self._numbers.append(generation)
            self._firsts.append(first_ms)
            self._log.extend(hashes)
            self._ends.append(len(self._log))

    def _index(self, generations: list[tuple[int, int, array[int]]]) -> None:
        """The generations' hashes into the shards: each inserted in place, or, when they outnumber the ones
        there (a partition's records loaded), appended and every shard they touched sorted once."""
        shards = self._shards
        added = sum(len(hashes) for _, _, hashes in generations)
        if added < len(self._log) - self._start(self._live):
            for _, _, hashes in generations:
                for digest in hashes:
                    bisect.insort(shards.setdefault(digest >> _SHIFT, array("Q")), digest)
            return
        touched: set[int] = set()
        for _, _, hashes in generations:
            for digest in hashes:
                index = digest >> _SHIFT
                shard = shards.get(index)
                if shard is None:
                    shard = shards[index] = array("Q")
                shard.append(digest)
                touched.add(index)
        for index in touched:
            shards[index] = array("Q", sorted(shards[index]))

    def _reorder(self, restored: list[tuple[int, int, array[int]]]) -> list[tuple[int, int, array[int]]]:
        """The live generations taken out of the log (their hashes stay in the shards), with ``restored``,
        in order of first-seen time."""
        placed = [(self._firsts[i], self._numbers[i], self._log[self._start(i):self._ends[i]])
                  for i in range(self._live, len(self._firsts))]
        self._numbers, self._firsts, self._ends, self._log = array("q"), array("q"), array("q"), array("Q")
        self._live = 0
        return sorted(placed + restored, key=_by_time)

    def _compact(self) -> None:
        """Cut the expired generations off the front of the log."""
        live, offset = self._live, self._start(self._live)
        del self._numbers[:live], self._firsts[:live], self._log[:offset]
        self._ends = array("q", [end - offset for end in self._ends[live:]])
        self._live = 0


def _by_time(generation: tuple[int, int, array[int]]) -> tuple[int, int]:
    return generation[0], generation[1]
