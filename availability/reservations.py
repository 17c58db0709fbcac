"""Reservation holds: decided by the single owner of the location, all-or-nothing per event.

A hold is accepted only if every line's quantity is within the SKU's ATS at decision time; it then
reserves its lines until released, consumed by a sale carrying its ``reservation_id``, or expired.
Finished holds are remembered (for the dedupe window) so that a retried ``reservation_id`` gets the
original outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

HELD = "held"
REJECTED = "rejected"
RELEASED = "released"
CONSUMED = "consumed"
EXPIRED = "expired"
LIVE = frozenset({HELD})


class Shortfall(NamedTuple):
    sku: str
    requested: int
    available: int


class Hold(NamedTuple):
    reservation_id: str
    location_id: str
    status: str
    lines: tuple[tuple[str, int], ...]
    remaining: tuple[tuple[str, int], ...]
    expires_ms: int
    decided_ms: int
    shortfalls: tuple[Shortfall, ...] = ()
    channel: str | None = None
    event_id: str = ""
    #: (topic code, offset) of the event that created the hold: a release earlier in the same input
    #: (replayed after a crash) must not find it
    origin: tuple[int, int] = (-1, -1)

    @property
    def live(self) -> bool:
        return self.status in LIVE


def shortfalls(lines: tuple[tuple[str, int], ...], available: Mapping[str, int]) -> tuple[Shortfall, ...]:
    """The lines a hold cannot take: requested above the SKU's ATS."""
    return tuple(Shortfall(sku, qty, available.get(sku, 0)) for sku, qty in lines if qty > available.get(sku, 0))


def consume(hold: Hold, skus: set[str]) -> tuple[Hold, tuple[tuple[str, int], ...]]:
    """A sale of ``skus`` consumes the held quantity of those SKUs; returns the hold and what it frees."""
    freed = tuple((sku, qty) for sku, qty in hold.remaining if sku in skus)
    if not freed:
        return hold, ()
    remaining = tuple((sku, qty) for sku, qty in hold.remaining if sku not in skus)
    return hold._replace(remaining=remaining, status=HELD if remaining else CONSUMED), freed


def finish(hold: Hold, status: str, now_ms: int) -> tuple[Hold, tuple[tuple[str, int], ...]]:
    """Release or expire what is left of a live hold."""
    return hold._replace(status=status, remaining=(), decided_ms=now_ms), hold.remaining
