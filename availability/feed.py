"""The availability change feed: a record whenever a position's ATS crosses a threshold.

Crossings are judged flush to flush, never event by event: a position's ATS as the last flush left
it is compared with its ATS now, so a burst of sales that takes a shelf from 12 to 0 in one flush
interval is one ``out_of_stock``, and a sale followed by a receipt that puts it back where it was is
nothing. Kinds (``threshold`` is the level crossed: below it is "out" / "low"):

=========================  ========================================================  ===========
kind                       when (``previous`` → ``now``, flush to flush)              threshold
=========================  ========================================================  ===========
``out_of_stock``           the position's ATS: > 0 → 0                                1
``back_in_stock``          the position's ATS: 0 → > 0                                1
``low_stock``              a channel's share of the position (max(0, ATS - buffer),   the level
                           eligible locations only): ≥ level → < level (0 included)
``low_stock_recovered``    that share: < level → ≥ level                              the level
=========================  ========================================================  ===========

Low-stock levels come from the channels file (:mod:`availability.channels`): ``low_stock`` per channel,
and a top-level ``low_stock`` for every location with no buffer (``channel`` null). 0 or absent: none.

``change_id`` is a hash of the position, the channel, the kind and the event that last changed the
position before the crossing (for a hold's expiry: the hold's event): the same crossing is named the
same wherever it is computed, and two crossings never share an id (an event changes a position once).
Pure: the shard (:mod:`availability.shard`) records what changed and calls :func:`crossings` per
changed position per flush; the worker sends what the shard keeps in its outbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from .channels import ALL_LOCATIONS, ChannelView, ChannelViews, channel_ats
from .model import Position
from .wire import rfc3339

_text = encode_basestring_ascii

OUT_OF_STOCK = "out_of_stock"
BACK_IN_STOCK = "back_in_stock"
LOW_STOCK = "low_stock"
LOW_STOCK_RECOVERED = "low_stock_recovered"
KINDS = (OUT_OF_STOCK, BACK_IN_STOCK, LOW_STOCK, LOW_STOCK_RECOVERED)

class Change(NamedTuple):
    change_id: str
    sku: str
    location_id: str | None  # None: the channel's whole network (availability.network)
    channel: str | None
    kind: str
    ats: int
    previous_ats: int
    threshold: int
    as_of_ms: int  # the position's ``updated_ms``: business time of the change that crossed
    detected_ms: int  # the flush that saw it
    event_ids: tuple[str, ...]


class LowStock(NamedTuple):
    channel: str | None
    view: ChannelView
    level: int


class FeedRules(NamedTuple):
    """The low-stock levels to watch (the 0 crossings are always watched)."""

    low_stock: tuple[LowStock, ...] = ()


def feed_rules(views: ChannelViews) -> FeedRules:
    """The levels a channels file configures: its top-level ``low_stock`` (every location, no buffer),
    then each channel's, in name order."""
    rules = [LowStock(None, ALL_LOCATIONS, views.low_stock)] if views.low_stock else []
    rules += [LowStock(name, views.channels[name], views.channels[name].low_stock) for name in views.names
              if views.channels[name].low_stock]
    return FeedRules(tuple(rules))


def crossings(rules: FeedRules, sku: str, location_id: str, before: int, position: Position,
              first: str | None, last: str | None, now_ms: int) -> list[Change]:
    """The crossings of one position between the last flush (its ATS then: ``before``) and now (``position``);
    ``first`` and ``last``: the ids of the first and the last event that changed it in between (the
    record's ``event_ids``: the start of a burst, and the event that took the position across)."""
    after = position.ats
    if before == after:
        return []
    found: list[tuple[str | None, str, int, int, int]] = []  # (channel, kind, previous, now, threshold)
    if (before > 0) != (after > 0):
        found.append((None, BACK_IN_STOCK if after else OUT_OF_STOCK, before, after, 1))
    for channel, view, level in rules.low_stock:
        if not view.eligible(location_id):
            continue
        was, now = channel_ats(view, location_id, before), channel_ats(view, location_id, after)
        if (was < level) != (now < level):
            found.append((channel, LOW_STOCK if now < level else LOW_STOCK_RECOVERED, was, now, level))
    cause = last or f"@{position.updated_ms}"
    event_ids = tuple(dict.fromkeys(e for e in (first, last) if e is not None))
    return [Change(change_id(sku, location_id, channel, kind, cause), sku, location_id, channel, kind, now, was,
                   threshold, position.updated_ms, now_ms, event_ids)
            for channel, kind, was, now, threshold in found]


def change_id(sku: str, location_id: str, channel: str | None, kind: str, cause: str) -> str:
    """Deterministic: the same crossing (position, channel, kind, the event that made it) → the same id."""
    text = "\x1f".join((sku, location_id, channel or "", kind, cause))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ---- wire ----------------------------------------------------------------------------------------
def change_record(change: Change) -> dict[str, Any]:
    """A change as ecommerce receives it on ``inventory.availability`` (keyed by SKU)."""
    return {"change_id": change.change_id, "sku": change.sku, "location_id": change.location_id,
            "channel": change.channel, "kind": change.kind, "ats": change.ats, "previous_ats": change.previous_ats,
            "threshold": change.threshold, "as_of": rfc3339(change.as_of_ms),
            "detected_at": rfc3339(change.detected_ms), "event_ids": list(change.event_ids)}


def outbox_json(changes: Iterable[Change]) -> str:
    """An outbox as stored in its bucket record (``f``), JSON text (written by hand, as the bucket's own
    members: :func:`json.dumps` was most of a crossing's cost)."""
    return "[" + ",".join([
        f"[{_text(c.change_id)},{_text(c.sku)},{_nullable(c.location_id)},{_nullable(c.channel)},{_text(c.kind)},"
        f"{c.ats},{c.previous_ats},"
        f"{c.threshold},{c.as_of_ms},{c.detected_ms},[{','.join(map(_text, c.event_ids))}]]" for c in changes]) + "]"


def unsent(outbox: list[Change], sent: set[str]) -> list[Change] | None:
    """The outbox without the delivered ids ``sent``; None when it held none of them (nothing to rewrite)."""
    kept = [change for change in outbox if change.change_id not in sent]
    return kept if len(kept) != len(outbox) else None


def _nullable(text: str | None) -> str:
    return "null" if text is None else _text(text)


def outbox_from_wire(rows: Iterable[list[Any]] | None) -> list[Change]:
    """An outbox as :func:`outbox_json` wrote it (its numbers are integers there). Built with
    ``tuple.__new__``, as ``_make`` does: a partition load may restore one change per position."""
    return [_new(Change, (change_id, sku, location_id, channel, kind, ats, previous, threshold, as_of, detected,
                          tuple(event_ids)))
            for change_id, sku, location_id, channel, kind, ats, previous, threshold, as_of, detected, event_ids
            in rows or ()]


_new = tuple.__new__
