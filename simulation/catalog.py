"""Who sells what where: Zipf-popular SKUs, the stores and DCs of a run, and their ids.

Ids carry the run's tag (``sim3f9a-S007``), so a run against a shared deployment only ever compares
positions it created itself.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import Any


class Zipf:
    """Draws ranks 0..n-1 with P(k) ∝ 1 / (k + 1) ** s, from cumulative weights computed once."""

    def __init__(self, n: int, s: float) -> None:
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n)))
        self.total = self.cumulative[-1]

    def draw(self, rng: random.Random) -> int:
        return min(len(self.cumulative) - 1, bisect.bisect_right(self.cumulative, rng.random() * self.total))

    def distinct(self, rng: random.Random, k: int) -> list[int]:
        """Up to ``k`` distinct ranks (a basket names a SKU once)."""
        chosen: dict[int, None] = {}
        for _ in range(k * 3):
            chosen[self.draw(rng)] = None
            if len(chosen) == k:
                break
        return list(chosen)

    def share(self, rank: int) -> float:
        previous = self.cumulative[rank - 1] if rank else 0.0
        return float((self.cumulative[rank] - previous) / self.total)


def sku(rank: int) -> str:
    return f"SKU-{rank:05d}"


def flash_sku(index: int) -> str:
    return f"DOOR-{index}"


def store(tag: str, index: int) -> str:
    return f"{tag}-S{index:03d}"


def dc(tag: str, index: int) -> str:
    return f"{tag}-DC{index}"


def chunks(items: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
