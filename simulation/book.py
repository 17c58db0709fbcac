"""The simulator's own ledger: what every position it touched must end with, worked from the events it
produced (the contract's arithmetic, DESIGN.md), and the stock it believes free.

Free stock is pessimistic on purpose: a hold counts against it from the moment it is asked for until its
rejection, release, expiry or sale is known, and the simulator never sells, ships or holds (outside the
doorbusters) beyond it. So a position can only end with ``on_hand < 0`` or ``reserved > on_hand -
safety_stock`` if the engine accepted a hold it had no stock for: an oversell.

Doorbusters are held far beyond their stock on purpose; their acceptances are checked against a timeline of
supply (:class:`FlashLog`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

Key = tuple[str, str]  # (location_id, sku)


@dataclass
class Expected:
    """One position as the contract's arithmetic says it must be (mutable: the simulator's scratch ledger)."""

    on_hand: int = 0
    reserved: int = 0
    in_transit: int = 0
    damaged: int = 0
    safety_stock: int = 0

    def as_list(self) -> list[int]:
        return [self.on_hand, self.reserved, self.in_transit, self.damaged, self.safety_stock]


@dataclass
class FlashLog:
    """A doorbuster position's supply and holds over run time (seconds): acceptances are checked against it."""

    supply: list[tuple[float, int]] = field(default_factory=list)  # (produced at, +qty)
    accepted: list[tuple[float, int, str]] = field(default_factory=list)  # (201 seen at, qty, reservation id)
    freed: dict[str, float] = field(default_factory=dict)  # reservation id → earliest moment it gave stock back

    def beyond_stock(self) -> list[tuple[float, int, int]]:
        """Acceptances after which more units were held or sold than had been supplied:
        ``(at, units held or sold, units supplied)``. Freed units count as freed from the earliest moment
        they could have been (the release asked, the expiry due), so a race never shows as an oversell."""
        beyond = []
        for at, _, _ in self.accepted:
            supplied = sum(qty for t, qty in self.supply if t <= at)
            used = sum(qty for t, qty, rid in self.accepted if t <= at and self.freed.get(rid, float("inf")) > at)
            if used > supplied:
                beyond.append((at, used, supplied))
        return beyond


class Book:
    def __init__(self) -> None:
        self.positions: dict[Key, Expected] = defaultdict(Expected)
        self.claims: dict[Key, int] = defaultdict(int)
        self.flash: dict[Key, FlashLog] = defaultdict(FlashLog)
        #: positions whose reserved quantity the simulator cannot know (a hold never decided)
        self.uncertain: set[Key] = set()

    def free(self, key: Key) -> int:
        """Stock nobody may have claimed: on_hand - safety_stock - every hold asked and not yet let go."""
        position = self.positions[key]
        return position.on_hand - position.safety_stock - self.claims[key]

    def move(self, location: str, sku: str, on_hand: int = 0, in_transit: int = 0, damaged: int = 0) -> None:
        position = self.positions[(location, sku)]
        position.on_hand += on_hand
        position.in_transit = max(0, position.in_transit + in_transit)
        position.damaged += damaged

    def count(self, location: str, sku: str, qty: int) -> None:
        """A count of the truth as of now: on_hand := qty (the simulator's on_hand is the truth)."""
        self.positions[(location, sku)].on_hand = qty

    def policy(self, location: str, sku: str, safety_stock: int) -> None:
        self.positions[(location, sku)].safety_stock = safety_stock

    def claim(self, location: str, lines: tuple[tuple[str, int], ...], sign: int = 1) -> None:
        for sku, qty in lines:
            self.claims[(location, sku)] += sign * qty

    def reserve(self, location: str, lines: tuple[tuple[str, int], ...], sign: int = 1) -> None:
        for sku, qty in lines:
            self.positions[(location, sku)].reserved += sign * qty
