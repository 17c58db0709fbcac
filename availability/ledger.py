"""Line operations on a position: ``(position, qty, occurred_ms, ref) -> (position, movements)``.

Dispatched by :data:`HANDLERS`. Every on-hand change goes through :func:`move_on_hand`, which applies
the count rules of the contract:

* a count at ``T`` sets on_hand to the counted quantity **as of T**: movements that occurred after ``T``
  stay applied on top of it; a count older than the latest applied count changes nothing;
* a movement that arrives late but occurred at or before the latest count no longer moves on_hand. It
  is still reported as a movement, together with the adjustment that offsets it, so the ERP feed
  conserves on_hand.

The movements returned are ``(movement_type, signed_qty)`` pairs for the ERP feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import Position

Movements = tuple[tuple[str, int], ...]
Handler = Callable[[Position, int, int, str, int], tuple[Position, Movements]]

_position: Callable[[tuple[Any, ...]], Position] = Position._make

#: a position's log is folded (oldest entries merged into on_hand) when it grows past this: first what
#: lies beyond the horizon, then, if that is not enough, all but the newest :data:`LOG_KEEP` entries. The
#: log is copied at every movement and encoded at every flush that changed the position, so its length
#: bounds the cost of a hot SKU's sale (unbounded, a store's best seller made a peak day quadratic).
LOG_FOLD_AT = 64
#: entries kept when the log is folded by length: a count can still be placed among a position's
#: newest 32 to 64 movements after its latest count, or within the horizon, whichever is shorter
LOG_KEEP = 32


class CountOutsideHorizon(ValueError):
    """A count older than the movements the position can still separate from on_hand."""


def move_on_hand(position: Position, delta: int, at: int, movement: str, horizon_ms: int) -> tuple[Position, Movements]:
    on_hand, reserved, in_transit, damaged, safety_stock, updated_ms, count_ms, count_id, floor_ms, before = position
    updated = updated_ms if updated_ms >= at else at
    if count_ms is not None and at <= count_ms:
        # Covered by a later count: on_hand already reflects it. Post it with its offset.
        return position._replace(updated_ms=updated), ((movement, delta), ("adjustment", -delta))
    if floor_ms is not None and at < floor_ms:
        return position._replace(on_hand=on_hand + delta, updated_ms=updated), ((movement, delta),)
    same_instant = bool(before) and before[-1][0] == at  # one entry (a basket, a burst)
    log = (*before[:-1], (at, before[-1][1] + delta)) if same_instant else (*before, (at, delta))
    if len(log) > LOG_FOLD_AT:
        log, floor_ms = _fold(log, floor_ms, horizon_ms)
    # built directly: ``_replace`` costs more than the rest of a line (this runs for most lines)
    moved = _position((on_hand + delta, reserved, in_transit, damaged, safety_stock, updated, count_ms, count_id,
                       floor_ms, log))
    return moved, ((movement, delta),)


def _fold(log: tuple[tuple[int, int], ...], floor_ms: int | None,
          horizon_ms: int) -> tuple[tuple[tuple[int, int], ...], int | None]:
    """Fold the oldest entries into on_hand (which already includes them): those older than the horizon
    behind the newest, and more if needed to keep at most :data:`LOG_KEEP`. The new floor is the oldest
    time kept: a count before it can no longer be placed. Entries are in arrival order, not time order
    (late movements are appended), so the cut is by time."""
    times = sorted((t for t, _ in log), reverse=True)
    cutoff = max(times[0] - horizon_ms, times[LOG_KEEP - 1])
    kept = tuple(entry for entry in log if entry[0] >= cutoff)
    return kept, cutoff if floor_ms is None else max(floor_ms, cutoff)


def count_refusal(position: Position, at: int, ref: str) -> str | None:
    """Why count ``ref`` at ``at`` cannot be applied to ``position`` (None: it can, or it changes nothing):
    it is older than the oldest movement the position still separates from on_hand."""
    if not _superseded(position, at, ref) and position.floor_ms is not None and at < position.floor_ms:
        return f"count at {at} is older than {position.floor_ms}, the oldest movement kept"
    return None


def _superseded(position: Position, at: int, ref: str) -> bool:
    """The count is the position's latest count, or older than it: it changes nothing."""
    return position.count_ms is not None and (at, ref) <= (position.count_ms, position.count_id)


def apply_count(position: Position, counted: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
    """on_hand := counted as of ``at``; the implied delta is posted as an ``adjustment``. Raises
    :class:`CountOutsideHorizon` where :func:`count_refusal` refuses it."""
    if (refusal := count_refusal(position, at, ref)) is not None:
        raise CountOutsideHorizon(refusal)
    if _superseded(position, at, ref):
        return position, ()
    later = tuple(entry for entry in position.log if entry[0] > at)
    on_hand = counted + sum(delta for _, delta in later)
    implied = on_hand - position.on_hand
    counted_position = position._replace(on_hand=on_hand, count_ms=at, count_id=ref, log=later,
                                         updated_ms=max(position.updated_ms, at))
    return counted_position, ((("adjustment", implied),) if implied else ())


def _on_hand(movement: str, sign: int) -> Handler:
    def handler(position: Position, qty: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
        return move_on_hand(position, sign * qty, at, movement, horizon_ms)

    return handler


def _damaged(position: Position, qty: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
    damaged = position._replace(damaged=position.damaged + qty, updated_ms=max(position.updated_ms, at))
    return damaged, (("return_damaged", qty),)


def _ship_in(position: Position, qty: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
    return position._replace(in_transit=position.in_transit + qty, updated_ms=max(position.updated_ms, at)), ()


def _receive(position: Position, qty: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
    arrived = position._replace(in_transit=max(0, position.in_transit - qty))
    return move_on_hand(arrived, qty, at, "transfer_in", horizon_ms)


def _policy(position: Position, qty: int, at: int, ref: str, horizon_ms: int) -> tuple[Position, Movements]:
    return position._replace(safety_stock=qty, updated_ms=max(position.updated_ms, at)), ()


HANDLERS: dict[str, Handler] = {
    "sale": _on_hand("sale", -1),
    "return": _on_hand("return", 1),
    "return_damaged": _damaged,
    "receipt": _on_hand("receipt", 1),
    "transfer_out": _on_hand("transfer_out", -1),
    "transfer_ship_in": _ship_in,
    "transfer_in": _receive,
    "adjustment": _on_hand("adjustment", 1),
    "count": apply_count,
    "policy": _policy,
}

#: movement types whose quantities move on_hand (the ERP conservation rule sums these)
ON_HAND_MOVEMENTS = frozenset({"sale", "return", "receipt", "transfer_out", "transfer_in", "adjustment"})
