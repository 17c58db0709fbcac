"""Idempotency by ``event_id`` over a time window.

Ids are remembered per *generation* (one flush of a partition); a generation is persisted as one
record and forgotten, all at once, when its first-seen time falls out of the window. So remembering
ids costs one state record per flush, not one per event.
"""

from __future__ import annotations

from collections.abc import Iterable


class RecentIds:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._generation_of: dict[str, int] = {}
        self._generations: dict[int, tuple[int, list[str]]] = {}  # generation → (first_ms, ids)
        self._pending: dict[str, None] = {}  # insertion-ordered set of ids not yet sealed

    def __contains__(self, key: str) -> bool:
        return key in self._generation_of or key in self._pending

    def __len__(self) -> int:
        return len(self._generation_of) + len(self._pending)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def add(self, key: str) -> None:
        self._pending[key] = None

    def restore(self, generation: int, first_ms: int, ids: Iterable[str]) -> None:
        ids = list(ids)
        self._generations[generation] = (first_ms, ids)
        for key in ids:
            self._generation_of[key] = generation

    def seal(self, generation: int, now_ms: int) -> list[str] | None:
        """Close the pending ids into ``generation``; returns them (None when there were none)."""
        if not self._pending:
            return None
        ids = list(self._pending)
        self._pending = {}
        self.restore(generation, now_ms, ids)
        return ids

    def expire(self, now_ms: int) -> list[int]:
        """Forget generations older than the window; returns the generations dropped."""
        cutoff = now_ms - self.window_ms
        dropped = [gen for gen, (first_ms, _) in self._generations.items() if first_ms < cutoff]
        for generation in dropped:
            _, ids = self._generations.pop(generation)
            for key in ids:
                if self._generation_of.get(key) == generation:
                    del self._generation_of[key]
        return dropped
