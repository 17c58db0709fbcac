"""A position (one SKU at one location) and the availability formula."""

from __future__ import annotations

from typing import NamedTuple


class Position(NamedTuple):
    """Frozen state of one (SKU, location). Quantities are integers; times are epoch milliseconds.

    ``count_ms``/``count_id`` identify the latest applied count; ``log`` holds the on-hand deltas of
    movements that occurred after it (``(occurred_ms, delta)``), so a count that arrives late can be
    placed "as of" its time. Movements older than ``floor_ms`` were folded into ``on_hand`` and can no
    longer be separated from it (see :mod:`availability.ledger`).
    """

    on_hand: int = 0
    reserved: int = 0
    in_transit: int = 0
    damaged: int = 0
    safety_stock: int = 0
    updated_ms: int = 0
    count_ms: int | None = None
    count_id: str = ""
    floor_ms: int | None = None
    log: tuple[tuple[int, int], ...] = ()

    @property
    def net(self) -> int:
        """on_hand - reserved - safety_stock: what ATS is before its floor at 0 (below 0: oversold)."""
        return self.on_hand - self.reserved - self.safety_stock

    @property
    def ats(self) -> int:
        return ats(self.on_hand, self.reserved, self.safety_stock)


EMPTY = Position()


def ats(on_hand: int, reserved: int, safety_stock: int) -> int:
    """ATS = max(0, on_hand - reserved - safety_stock)."""
    return max(0, on_hand - reserved - safety_stock)
