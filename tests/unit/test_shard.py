"""One partition's working state: every event type's effect, holds, idempotence and crash replay.

Events are built as the producers send them (JSON bytes through ``validate_event``) and split into legs
with :func:`availability.routing.legs`. Expected values are worked by hand from DESIGN.md or are
properties of the contract (idempotence, conservation, holds within ATS).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability import shard as shard_module
from availability.events import AnyEvent
from availability.ledger import ON_HAND_MOVEMENTS
from availability.model import EMPTY, Position
from availability.reservations import Hold
from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.topics import ROUTED, TOPIC_CODE, TOPIC_FOR_TYPE
from availability.validation import Rejection, validate_event
from availability.wire import bucket_of

DAY = 86_400_000
HORIZON = DAY
WINDOW = 7 * DAY
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NOW = T0 + 3_600_000  # processing time: an hour after T0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROUTED_CODE = TOPIC_CODE[ROUTED]

_ids = itertools.count()


def iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat()


def lines(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": qty} for sku, qty in pairs]


def ev(kind: str, *, at: int = T0, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id or f"{kind}-{next(_ids)}", "type": kind, "occurred_at": iso(at), **fields}


def sale(loc: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("sale", location_id=loc, lines=lines(*pairs), **kw)


def receipt(loc: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("receipt", location_id=loc, lines=lines(*pairs), **kw)


def hold(loc: str, rid: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("reservation", location_id=loc, reservation_id=rid, action="hold", lines=lines(*pairs), **kw)


def release(loc: str, rid: str, **kw: Any) -> dict[str, Any]:
    return ev("reservation", location_id=loc, reservation_id=rid, action="release", **kw)


def count(loc: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("adjustment", location_id=loc, mode="count", lines=lines(*pairs), **kw)


def delta(loc: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("adjustment", location_id=loc, mode="delta", lines=lines(*pairs), **kw)


def policy(loc: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("policy", location_id=loc, lines=[{"sku": s, "safety_stock": q} for s, q in pairs], **kw)


def transfer(status: str, origin: str, destination: str, *pairs: tuple[str, int], **kw: Any) -> dict[str, Any]:
    return ev("transfer", transfer_id=kw.pop("transfer_id", "t-1"), status=status, from_location_id=origin,
              to_location_id=destination, lines=lines(*pairs), **kw)


def parse(raw: dict[str, Any]) -> AnyEvent:
    return validate_event(orjson.dumps(raw), expected_type=raw["type"])


def new_state(partition: int = 0) -> PartitionState:
    return PartitionState(partition=partition, horizon_ms=HORIZON, dedupe_window_ms=WINDOW)


class Shard:
    """A partition state fed like the worker feeds it: every leg it owns, at the next offset of the topic."""

    def __init__(self, partition: int = 0, owns: set[str] | None = None) -> None:
        self.state = new_state(partition)
        self.owns = owns
        self.offsets: dict[int, int] = defaultdict(int)

    def next_source(self, code: int) -> Source:
        offset = self.offsets[code]
        self.offsets[code] += 1
        return Source(code, offset)

    def send(self, raw: dict[str, Any], now_ms: int = NOW, *, source: Source | None = None,
             routed: bool = False) -> list[Rejection]:
        event = parse(raw)
        code = ROUTED_CODE if routed else TOPIC_CODE[TOPIC_FOR_TYPE[event.type]]
        src = source or self.next_source(code)
        rejections = []
        for leg in legs(event):
            if self.owns is not None and leg.location_id not in self.owns:
                continue
            rejection = self.state.apply(event, leg, src, now_ms)
            if rejection is not None:
                rejections.append(rejection)
        self.state.consumed(src)
        return rejections

    def tick(self, now_ms: int) -> None:
        source = self.next_source(ROUTED_CODE)
        self.state.tick(now_ms, source)
        self.state.consumed(source, quiet=True)

    def pos(self, loc: str, sku: str) -> Position:
        return self.state.position(loc, sku)

    def hold(self, rid: str) -> Hold:
        return self.state.holds[rid]


def snapshot(state: PartitionState) -> tuple[dict[tuple[str, str], Position], dict[str, Hold]]:
    """State to compare; a hold's ``origin`` (the offset that created it) is provenance, not state."""
    return ({(loc, sku): p for sku, loc, p in state.positions()},
            {rid: hold._replace(origin=(-1, -1)) for rid, hold in state.holds.items()})


def through_json(value: Any) -> Any:
    """What the changelog gives back: the drained record (JSON text, or a structure) parsed again."""
    if value is None:
        return None
    return orjson.loads(value if isinstance(value, str) else orjson.dumps(value))


def restore(records: list[tuple[str, Any]], partition: int = 0) -> PartitionState:
    state = new_state(partition)
    for key, value in records:
        state.load(key, through_json(value))
    return state


def table_after(*flushes: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The changelog table after writing these record lists in order (a later value of a key wins)."""
    table: dict[str, Any] = {}
    for records in flushes:
        for key, value in records:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return list(table.items())


def drained(state: PartitionState, now_ms: int = NOW) -> list[tuple[str, Any]]:
    flush = state.drain(now_ms)
    assert flush is not None
    return [*flush.records, flush.marker]


# ---- each event type's effect ---------------------------------------------------------------------

def test_receipt_then_sale() -> None:
    shard = Shard()
    assert shard.send(receipt("S1", ("A", 10), ("B", 2))) == []
    assert shard.send(sale("S1", ("A", 3))) == []
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "A").ats) == (7, 7)
    assert shard.pos("S1", "B").on_hand == 2
    assert shard.pos("S2", "A") == EMPTY


def test_sale_is_never_rejected_even_below_zero() -> None:
    shard = Shard()
    assert shard.send(sale("S1", ("A", 3))) == []
    assert shard.pos("S1", "A").on_hand == -3
    assert shard.pos("S1", "A").ats == 0


def test_sale_lines_of_one_sku_all_apply() -> None:
    shard = Shard()
    shard.send(sale("S1", ("A", 3), ("A", 2)))
    assert shard.pos("S1", "A").on_hand == -5


def test_returns_sellable_and_damaged() -> None:
    shard = Shard()
    shard.send(ev("return", location_id="S1", lines=[{"sku": "A", "qty": 2},
                                                     {"sku": "B", "qty": 3, "disposition": "damaged"},
                                                     {"sku": "C", "qty": 1, "disposition": "sellable"}]))
    a, b, c = shard.pos("S1", "A"), shard.pos("S1", "B"), shard.pos("S1", "C")
    assert (a.on_hand, a.damaged, a.ats) == (2, 0, 2)
    assert (b.on_hand, b.damaged, b.ats) == (0, 3, 0)
    assert (c.on_hand, c.damaged) == (1, 0)


def test_transfer_legs_on_one_shard() -> None:
    shard = Shard()
    shard.send(receipt("DC", ("A", 10)))
    shard.send(transfer("shipped", "DC", "S1", ("A", 4)))
    assert (shard.pos("DC", "A").on_hand, shard.pos("DC", "A").in_transit) == (6, 0)
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "A").in_transit, shard.pos("S1", "A").ats) == (0, 4, 0)
    shard.send(transfer("received", "DC", "S1", ("A", 4)))
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "A").in_transit) == (4, 0)
    assert shard.pos("DC", "A").on_hand == 6


def test_partial_receipt_leaves_the_rest_in_transit() -> None:
    shard = Shard()
    shard.send(transfer("shipped", "DC", "S1", ("A", 4)))
    shard.send(transfer("received", "DC", "S1", ("A", 3)))
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "A").in_transit) == (3, 1)


def test_delta_adjustments() -> None:
    shard = Shard()
    shard.send(delta("S1", ("A", 5), ("B", -2)))
    shard.send(delta("S1", ("A", -1)))
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "B").on_hand) == (4, -2)


def test_count_as_of_its_time() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), at=T0 + 100))
    shard.send(sale("S1", ("A", 3), at=T0 + 300))
    shard.send(count("S1", ("A", 20), at=T0 + 200))
    assert shard.pos("S1", "A").on_hand == 17  # 20 as of +200, then the sale at +300
    shard.send(sale("S1", ("A", 5), at=T0 + 150))  # late, covered by the count
    assert shard.pos("S1", "A").on_hand == 17
    shard.send(count("S1", ("A", 50), at=T0 + 50))  # older count
    assert shard.pos("S1", "A").on_hand == 17


def test_count_outside_the_horizon_is_rejected_and_changes_nothing() -> None:
    shard = Shard()
    start = T0
    for i in range(70):  # one receipt per hour: the position folds what is older than a day
        shard.send(receipt("S1", ("A", 1), ("B", 1), at=start + i * 3_600_000))
    before = snapshot(shard.state)
    rejections = shard.send(count("S1", ("B", 0), ("A", 0), at=start))
    assert [r.reason for r in rejections] == ["count_outside_horizon"]
    assert snapshot(shard.state) == before
    # a line that could be counted, before one that cannot: the event is refused whole
    rejections = shard.send(count("S1", ("C", 5), ("A", 0), at=start))
    assert [r.reason for r in rejections] == ["count_outside_horizon"]
    assert snapshot(shard.state) == before


def test_policy_and_ats_with_safety_stock() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(policy("S1", ("A", 3)))
    position = shard.pos("S1", "A")
    assert (position.on_hand, position.safety_stock, position.ats) == (10, 3, 7)
    shard.send(policy("S1", ("A", 12)))
    assert shard.pos("S1", "A").ats == 0  # never negative
    shard.send(policy("S1", ("A", 0)))
    assert shard.pos("S1", "A").ats == 10


# ---- reservations ---------------------------------------------------------------------------------

def test_hold_accepted_reserves_and_expires_after_its_ttl() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), ("B", 5)))
    assert shard.send(hold("S1", "R1", ("A", 4), ("B", 5), ttl_seconds=60)) == []
    held = shard.hold("R1")
    assert (held.status, held.expires_ms, held.remaining) == ("held", NOW + 60_000, (("A", 4), ("B", 5)))
    assert (shard.pos("S1", "A").reserved, shard.pos("S1", "A").ats) == (4, 6)
    assert (shard.pos("S1", "B").reserved, shard.pos("S1", "B").ats) == (5, 0)
    assert shard.pos("S1", "A").on_hand == 10


def test_hold_ttl_defaults_to_900_seconds() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 1)))
    shard.send(hold("S1", "R1", ("A", 1)))
    assert shard.hold("R1").expires_ms == NOW + 900_000


def test_hold_up_to_exactly_ats_is_accepted() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(policy("S1", ("A", 3)))
    shard.send(hold("S1", "R1", ("A", 7)))
    assert shard.hold("R1").status == "held"
    shard.send(hold("S1", "R2", ("A", 1)))
    assert shard.hold("R2").status == "rejected"
    assert shard.hold("R2").shortfalls == (("A", 1, 0),)


def test_hold_is_all_or_nothing() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), ("B", 2)))
    assert shard.send(hold("S1", "R1", ("A", 4), ("B", 3), ("C", 1))) == []  # a refused hold is a decision
    refused = shard.hold("R1")
    assert refused.status == "rejected"
    assert refused.remaining == ()
    assert [(s.sku, s.requested, s.available) for s in refused.shortfalls] == [("B", 3, 2), ("C", 1, 0)]
    assert (shard.pos("S1", "A").reserved, shard.pos("S1", "B").reserved) == (0, 0)
    assert (shard.pos("S1", "A").ats, shard.pos("S1", "B").ats) == (10, 2)


def test_two_holds_cannot_both_take_the_last_unit() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 1)))
    shard.send(hold("S1", "R1", ("A", 1)))
    shard.send(hold("S1", "R2", ("A", 1)))
    assert (shard.hold("R1").status, shard.hold("R2").status) == ("held", "rejected")
    assert shard.pos("S1", "A").reserved == 1


def test_hold_is_idempotent_on_reservation_id() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4)))
    shard.send(hold("S1", "R1", ("A", 4)))  # a retry: a new event id, the same reservation
    assert shard.pos("S1", "A").reserved == 4
    shard.send(hold("S1", "R2", ("A", 20)))
    shard.send(receipt("S1", ("A", 100)))
    shard.send(hold("S1", "R2", ("A", 20)))  # the original outcome stands
    assert shard.hold("R2").status == "rejected"
    assert shard.pos("S1", "A").reserved == 4


def test_release_frees_the_hold() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4)))
    assert shard.send(release("S1", "R1")) == []
    assert shard.hold("R1").status == "released"
    assert (shard.pos("S1", "A").reserved, shard.pos("S1", "A").ats) == (0, 10)
    assert shard.send(release("S1", "R1")) == []  # releasing again changes nothing
    assert shard.pos("S1", "A").reserved == 0


def test_release_of_an_unknown_reservation_is_rejected() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4)))
    before = snapshot(shard.state)
    rejections = shard.send(release("S1", "nope"))
    assert [r.reason for r in rejections] == ["unknown_reservation"]
    wrong_place = shard.send(release("S2", "R1"))
    assert [r.reason for r in wrong_place] == ["unknown_reservation"]
    assert snapshot(shard.state) == before


def test_sale_with_reservation_consumes_the_hold() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), ("B", 10)))
    shard.send(hold("S1", "R1", ("A", 4), ("B", 2)))
    assert shard.pos("S1", "A").ats == 6
    shard.send(sale("S1", ("A", 4), reservation_id="R1"))
    a = shard.pos("S1", "A")
    assert (a.on_hand, a.reserved, a.ats) == (6, 0, 6)  # the sold units were the held ones
    assert shard.hold("R1").status == "held"  # B is still held
    assert shard.hold("R1").remaining == (("B", 2),)
    assert shard.pos("S1", "B").reserved == 2
    shard.send(sale("S1", ("B", 1), reservation_id="R1"))
    b = shard.pos("S1", "B")
    assert (b.on_hand, b.reserved) == (9, 0)  # reserved -= the held qty of the SKU, never double-counted
    assert shard.hold("R1").status == "consumed"
    shard.send(sale("S1", ("B", 1), reservation_id="R1"))  # nothing left to consume: a plain sale
    assert (shard.pos("S1", "B").on_hand, shard.pos("S1", "B").reserved) == (8, 0)


def test_sale_without_reservation_leaves_holds_alone() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4)))
    shard.send(sale("S1", ("A", 4)))
    a = shard.pos("S1", "A")
    assert (a.on_hand, a.reserved, a.ats) == (6, 4, 2)


def test_sale_with_a_reservation_held_elsewhere_does_not_consume_it() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4)))
    shard.send(sale("S2", ("A", 1), reservation_id="R1"))
    assert shard.pos("S1", "A").reserved == 4
    assert shard.pos("S2", "A").on_hand == -1


def test_hold_expires_at_its_time_by_tick() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4), ttl_seconds=30))
    expires = NOW + 30_000
    shard.tick(expires - 1)
    assert (shard.hold("R1").status, shard.pos("S1", "A").reserved) == ("held", 4)
    shard.tick(expires)
    assert (shard.hold("R1").status, shard.pos("S1", "A").reserved) == ("expired", 0)
    assert shard.pos("S1", "A").ats == 10
    shard.send(sale("S1", ("A", 1), reservation_id="R1"))  # too late: a plain sale
    assert (shard.pos("S1", "A").on_hand, shard.pos("S1", "A").reserved) == (9, 0)
    assert shard.send(release("S1", "R1")) == []
    assert shard.pos("S1", "A").reserved == 0


def test_released_hold_does_not_expire_again() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4), ttl_seconds=30))
    shard.send(hold("S1", "R2", ("A", 3), ttl_seconds=600))
    shard.send(release("S1", "R1"))
    shard.tick(NOW + 60_000)
    assert shard.hold("R1").status == "released"
    assert shard.pos("S1", "A").reserved == 3


def netted(state: PartitionState, posted: list[Any] | None = None) -> dict[tuple[str, str, str], int]:
    """Σ qty per (location, sku, movement type) the ERP feed has netted: pending entries and ``posted``."""
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for (location_id, _), bucket in state.buckets.items():
        for (sku, kind, _), (qty, *_) in bucket.netting.pending.items():
            out[(location_id, sku, kind)] += qty
    for posting in posted or ():
        out[(posting.location_id, posting.sku, posting.movement_type)] += posting.qty
    return {key: qty for key, qty in out.items() if qty}


def test_drain_reports_decisions_and_cache() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), event_id="e-rcv", at=T0 + 5))
    shard.send(hold("S1", "R1", ("A", 4)))
    shard.send(sale("S1", ("A", 2), event_id="e-sale", at=T0 + 7))
    flush = shard.state.drain(NOW)
    assert flush is not None
    assert netted(shard.state) == {("S1", "A", "receipt"): 10, ("S1", "A", "sale"): -2}
    assert [(h.reservation_id, h.status) for h in flush.decisions] == [("R1", "held")]
    assert [(sku, loc, p.on_hand, p.reserved) for sku, loc, p in flush.cache] == [("A", "S1", 8, 4)]
    assert flush.marker[0] == "m|0"
    assert shard.state.drain(NOW) is None  # nothing changed since


# ---- idempotence ----------------------------------------------------------------------------------

def test_same_event_twice_is_applied_once() -> None:
    shard = Shard()
    once = receipt("S1", ("A", 10))
    shard.send(once)
    shard.send(once)
    shard.send(sale("S1", ("A", 3), event_id="s-1"))
    shard.send(sale("S1", ("A", 3), event_id="s-1"))
    assert shard.pos("S1", "A").on_hand == 7
    flush = shard.state.drain(NOW)
    assert flush is not None
    assert sum(netted(shard.state).values()) == 7


def test_duplicate_within_the_window_after_flushes_is_ignored() -> None:
    shard = Shard()
    event = receipt("S1", ("A", 10))
    shard.send(event)
    shard.state.drain(NOW)
    later = NOW + 6 * DAY
    shard.tick(later)
    shard.state.drain(later)
    shard.send(event, now_ms=later)
    assert shard.pos("S1", "A").on_hand == 10


SKUS = ["A", "B", "C"]
LOCS = ["S1", "S2"]
RIDS = ["R1", "R2", "R3"]


@st.composite
def steps(draw: st.DrawFn, max_size: int = 25) -> list[Any]:
    """A random history: events (as raw dicts) and clock ticks, in processing order."""
    out: list[Any] = []
    n = draw(st.integers(1, max_size))
    now = NOW
    for i in range(n):
        now += draw(st.integers(0, 120_000))
        kind = draw(st.sampled_from(["receipt", "sale", "return", "delta", "count", "policy", "hold", "hold",
                                     "release", "reserved_sale", "shipped", "received", "tick"]))
        if kind == "tick":
            out.append(("tick", now))
            continue
        loc = draw(st.sampled_from(LOCS))
        at = T0 + draw(st.integers(0, 60)) * 1_000
        eid = f"e{i}"
        skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))
        pairs = [(sku, draw(st.integers(1, 12))) for sku in skus]
        raw: dict[str, Any]
        if kind == "receipt":
            raw = receipt(loc, *pairs, at=at, event_id=eid)
        elif kind == "sale":
            raw = sale(loc, *pairs, at=at, event_id=eid)
        elif kind == "reserved_sale":
            raw = sale(loc, *pairs, at=at, event_id=eid, reservation_id=draw(st.sampled_from(RIDS)))
        elif kind == "return":
            raw = ev("return", at=at, event_id=eid, location_id=loc, lines=[
                {"sku": s, "qty": q, "disposition": draw(st.sampled_from(["sellable", "damaged"]))} for s, q in pairs])
        elif kind == "delta":
            raw = delta(loc, *[(s, q * draw(st.sampled_from([1, -1]))) for s, q in pairs], at=at, event_id=eid)
        elif kind == "count":
            raw = count(loc, *[(s, q - 1) for s, q in pairs], at=at, event_id=eid)
        elif kind == "policy":
            raw = policy(loc, *[(s, q % 4) for s, q in pairs], at=at, event_id=eid)
        elif kind == "hold":
            raw = hold(loc, draw(st.sampled_from(RIDS)), *pairs, at=at, event_id=eid,
                       ttl_seconds=draw(st.sampled_from([60, 300, 900])))
        elif kind == "release":
            raw = release(loc, draw(st.sampled_from(RIDS)), at=at, event_id=eid)
        else:
            other = LOCS[1 - LOCS.index(loc)]
            raw = transfer(kind, loc, other, *pairs, at=at, event_id=eid, transfer_id=f"t{i}")
        out.append((raw, now))
    return out


def run(shard: Shard, history: list[Any], sources: list[Source] | None = None) -> list[list[Rejection]]:
    """Apply a history; ``sources`` pins the offset of each step (None: the next offset of its topic)."""
    results = []
    for i, (item, now) in enumerate(history):
        if item == "tick":
            source = sources[i] if sources else shard.next_source(ROUTED_CODE)
            shard.state.tick(now, source)
            shard.state.consumed(source, quiet=True)
            results.append([])
        else:
            results.append(shard.send(item, now, source=sources[i] if sources else None))
    return results


def sources_of(history: list[Any]) -> list[Source]:
    offsets: dict[int, int] = defaultdict(int)
    out = []
    for item, _ in history:
        code = ROUTED_CODE if item == "tick" else TOPIC_CODE[TOPIC_FOR_TYPE[item["type"]]]
        out.append(Source(code, offsets[code]))
        offsets[code] += 1
    return out


def live_reserved(state: PartitionState) -> dict[tuple[str, str], int]:
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    for h in state.holds.values():
        if h.live:
            for sku, qty in h.remaining:
                reserved[(h.location_id, sku)] += qty
    return reserved


def check_invariants(state: PartitionState) -> None:
    reserved = live_reserved(state)
    for sku, loc, position in state.positions():
        assert position.ats >= 0
        assert position.ats == max(0, position.on_hand - position.reserved - position.safety_stock)
        assert position.reserved == reserved.get((loc, sku), 0), (loc, sku)
        assert position.in_transit >= 0
        assert position.damaged >= 0
    for loc, sku in reserved:
        assert state.position(loc, sku).reserved == reserved[(loc, sku)]


@settings(max_examples=200, deadline=None)
@given(history=steps(), data=st.data())
def test_redelivered_events_change_nothing(history: list[Any], data: st.DataObject) -> None:
    once = Shard()
    outcomes = run(once, history)
    # Redeliver some applied events (same event id, later offsets) right after themselves or later on.
    with_dups = list(history)
    applied = [i for i, (item, _) in enumerate(history) if item != "tick" and not outcomes[i]]
    for i in data.draw(st.lists(st.sampled_from(applied), max_size=10)) if applied else []:
        position = data.draw(st.integers(with_dups.index(history[i]) + 1, len(with_dups)))
        now = with_dups[position - 1][1]
        with_dups.insert(position, (history[i][0], now))
    twice = Shard()
    run(twice, with_dups)
    assert snapshot(twice.state) == snapshot(once.state)


@settings(max_examples=200, deadline=None)
@given(history=steps())
def test_invariants_hold_after_every_step(history: list[Any]) -> None:
    shard = Shard()
    posted = []
    for item, now in history:
        if item == "tick":
            shard.tick(now)
        else:
            shard.send(item, now)
        check_invariants(shard.state)
        flush = shard.state.drain(now)
        posted.extend(flush.postings if flush else [])
    movements: dict[tuple[str, str], int] = defaultdict(int)
    for (loc, sku, kind), qty in netted(shard.state, posted).items():
        if kind in ON_HAND_MOVEMENTS:
            movements[(loc, sku)] += qty
    for sku, loc, position in shard.state.positions():
        assert movements[(loc, sku)] == position.on_hand  # the ERP feed conserves on_hand


@st.composite
def hold_steps(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = []
    now = NOW
    for i in range(draw(st.integers(1, 40))):
        now += draw(st.integers(0, 200_000))
        kind = draw(st.sampled_from(["receipt", "sale", "reserved_sale", "hold", "hold", "hold", "release",
                                     "policy", "tick"]))
        if kind == "tick":
            out.append(("tick", now))
            continue
        skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))
        pairs = [(sku, draw(st.integers(1, 8))) for sku in skus]
        rid = f"R{draw(st.integers(0, 6))}"
        eid = f"e{i}"
        if kind == "receipt":
            raw = receipt("S1", *pairs, event_id=eid)
        elif kind == "sale":
            raw = sale("S1", *pairs, event_id=eid)
        elif kind == "reserved_sale":
            raw = sale("S1", *pairs, event_id=eid, reservation_id=rid)
        elif kind == "hold":
            raw = hold("S1", rid, *pairs, event_id=eid, ttl_seconds=draw(st.sampled_from([60, 300])))
        elif kind == "release":
            raw = release("S1", rid, event_id=eid)
        else:
            raw = policy("S1", *[(s, q % 3) for s, q in pairs], event_id=eid)
        out.append((raw, now))
    return out


@settings(max_examples=200, deadline=None)
@given(history=hold_steps())
def test_holds_never_exceed_ats(history: list[Any]) -> None:
    shard = Shard()
    for item, now in history:
        if item == "tick":
            shard.tick(now)
            check_invariants(shard.state)
            continue
        before = {sku: shard.pos("S1", sku) for sku in SKUS}
        known = item["type"] == "reservation" and item["reservation_id"] in shard.state.holds
        shard.send(item, now)
        if item["type"] == "reservation" and item["action"] == "hold" and not known:
            decided = shard.hold(item["reservation_id"])
            asked = [(line["sku"], line["qty"]) for line in item["lines"]]
            if decided.status == "held":
                assert all(qty <= before[sku].ats for sku, qty in asked)
                for sku, qty in asked:
                    assert shard.pos("S1", sku).reserved == before[sku].reserved + qty
            else:
                assert decided.status == "rejected"
                assert any(qty > before[sku].ats for sku, qty in asked)
                assert {sku: shard.pos("S1", sku) for sku in SKUS} == before  # all or nothing
                assert sorted(decided.shortfalls) == sorted(
                    (sku, qty, before[sku].ats) for sku, qty in asked if qty > before[sku].ats)
        check_invariants(shard.state)


# ---- recovery and replay --------------------------------------------------------------------------

def _busy_shard() -> tuple[Shard, list[Any]]:
    shard = Shard()
    history = [
        (receipt("S1", ("A", 10), ("B", 4), event_id="e1", at=T0 + 1_000), NOW),
        (sale("S1", ("A", 2), event_id="e2", at=T0 + 2_000), NOW),
        (hold("S1", "R1", ("A", 3), ("B", 1), event_id="e3"), NOW),
        (hold("S1", "R2", ("B", 9), event_id="e4"), NOW),  # rejected
        (policy("S1", ("B", 1), event_id="e5"), NOW),
        (count("S1", ("B", 6), event_id="e6", at=T0 + 1_500), NOW),
        (sale("S1", ("A", 1), ("B", 1), event_id="e7", reservation_id="R1", at=T0 + 3_000), NOW),
        (transfer("shipped", "S1", "S2", ("A", 2), event_id="e8", at=T0 + 4_000), NOW),
        (ev("return", location_id="S2", lines=[{"sku": "C", "qty": 1, "disposition": "damaged"}],
            event_id="e9"), NOW),
        (hold("S2", "R3", ("A", 1), event_id="e10"), NOW),  # rejected: nothing on hand at S2 yet
        (delta("S2", ("A", 5), event_id="e11"), NOW),
        (hold("S1", "R4", ("A", 1), event_id="e12", ttl_seconds=60), NOW),
        (release("S1", "R4", event_id="e13"), NOW),
    ]
    outcomes = run(shard, history)
    assert all(not o for o in outcomes)
    return shard, history


def test_busy_history_worked_by_hand() -> None:
    shard, _ = _busy_shard()
    # A at S1: 10 - 2 - 1 - 2 (shipped) = 5; R1 held 3 of A, consumed by e7 → reserved 0.
    a1 = shard.pos("S1", "A")
    assert (a1.on_hand, a1.reserved, a1.ats) == (5, 0, 5)
    # B at S1: count of 6 as of +1.5 s, then the sale at +3 s → 5; R1's B consumed; safety 1.
    b1 = shard.pos("S1", "B")
    assert (b1.on_hand, b1.reserved, b1.safety_stock, b1.ats) == (5, 0, 1, 4)
    a2 = shard.pos("S2", "A")
    assert (a2.on_hand, a2.in_transit) == (5, 2)
    assert shard.pos("S2", "C").damaged == 1
    statuses = {rid: h.status for rid, h in shard.state.holds.items()}
    assert statuses == {"R1": "consumed", "R2": "rejected", "R3": "rejected", "R4": "released"}


def test_restored_state_equals_the_drained_one() -> None:
    shard, _ = _busy_shard()
    records = drained(shard.state)
    restored = restore(records)
    assert snapshot(restored) == snapshot(shard.state)
    assert restored.generation == shard.state.generation


def netting_of(state: PartitionState) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {address: (bucket.netting.pending, bucket.netting.outbox, bucket.netting.closed_before)
            for address, bucket in state.buckets.items() if bucket.netting}


@settings(max_examples=200, deadline=None)
@given(history=steps(), slots=st.sampled_from([1, 2, 3, shard_module.CHAIN_SLOTS]), data=st.data())
def test_the_changelog_after_any_drains_restores_the_state(history: list[Any], slots: int,
                                                           data: st.DataObject) -> None:
    """Full records and chains of records of changes (of any length, in older versions' slots too),
    restored in any order, give back exactly the state drained, after every drain."""
    shard = Shard()
    flushes = []
    with mock.patch.object(shard_module, "CHAIN_SLOTS", slots):
        for step in history:
            run(shard, [step])
            if data.draw(st.booleans()) and shard.state.dirty:
                flushes.append(drained(shard.state, step[1]))
                restored = restore(data.draw(st.permutations(table_after(*flushes))))
                assert snapshot(restored) == snapshot(shard.state)
                assert netting_of(restored) == netting_of(shard.state)
                assert [(a, b.version, b.chain) for a, b in sorted(restored.buckets.items())] == [
                    (a, b.version, b.chain) for a, b in sorted(shard.state.buckets.items())]
                assert not restored._unplaced_changes  # an older version's slots are not kept


@pytest.mark.parametrize("offsets", ["same", "new"])
def test_replay_after_restore_changes_nothing(offsets: str) -> None:
    shard, history = _busy_shard()
    restored = Shard()
    restored.state = restore(drained(shard.state))
    expected = snapshot(shard.state)
    if offsets == "same":
        run(restored, history, sources_of(history))
    else:
        for code, offset in shard.offsets.items():
            restored.offsets[code] = offset + 100
        run(restored, history)
    assert snapshot(restored.state) == expected
    flush = restored.state.drain(NOW)
    assert flush is None or (flush.postings == [] and flush.cache == []
                             and all(not key.startswith("b|") for key, _ in flush.records))


def test_replay_at_same_offsets_is_skipped_by_watermarks_alone() -> None:
    # The event ids were not stored (crash before the ids record): the bucket watermarks skip the replay.
    shard, history = _busy_shard()
    records = [(key, value) for key, value in drained(shard.state) if not key.startswith("d|")]
    restored = Shard()
    restored.state = restore(records)
    run(restored, history, sources_of(history))
    assert snapshot(restored.state) == snapshot(shard.state)


def test_ids_records_of_the_previous_version_still_load() -> None:
    """Before the ids were kept as hashes an ids record held them as strings (``{"t", "ids"}``): such a record
    still makes a redelivery a duplicate, until its generation leaves the window; then it is deleted."""
    shard = Shard()
    events = [receipt("S1", ("A", 10), event_id="r-1"), transfer("shipped", "S1", "S2", ("A", 3), event_id="t-1"),
              sale("S2", ("A", 1), event_id="s-1")]
    for event in events:
        shard.send(event)
    # without their ids record, and the ids the bucket records carry until one holds them
    records = [(key, {k: v for k, v in orjson.loads(value).items() if k != "i"} if key.startswith("b|") else value)
               for key, value in drained(shard.state) if not key.startswith("d|")]
    assert shard.state.generation == 1
    old = {"t": NOW, "ids": ["r-1", "t-1#from", "t-1#to", "s-1"]}
    assert sorted(old["ids"]) == sorted(leg.dedupe_key(e["event_id"]) for e in events for leg in legs(parse(e)))
    restored = Shard()
    restored.state = restore([*records, ("d|0|1", old)])
    restored.offsets.update({code: offset + 100 for code, offset in shard.offsets.items()})  # not the watermarks
    for event in events:
        restored.send(event)
    assert snapshot(restored.state) == snapshot(shard.state)
    assert restored.state.drain(NOW) is not None  # the inputs moved
    assert not restored.state.dirty
    later = NOW + WINDOW + 1
    restored.tick(later)
    flush = restored.state.drain(later)
    assert flush is not None
    assert ("d|0|1", None) in flush.records
    assert not any(key in restored.state.ids for key in old["ids"])  # remembered no longer
    restored.send(receipt("S1", ("A", 1), event_id="r-2"), now_ms=later)
    flush = restored.state.drain(later)
    assert flush is not None
    (key, value), = [(key, value) for key, value in flush.records if key.startswith("d|")]
    assert (key, set(orjson.loads(value))) == ("d|0|2", {"t", "h"})


def test_restore_keeps_live_holds_expiring() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    shard.send(hold("S1", "R1", ("A", 4), ttl_seconds=60))
    restored = Shard()
    restored.state = restore(drained(shard.state))
    restored.offsets[ROUTED_CODE] = 10
    restored.tick(NOW + 60_000)
    assert (restored.hold("R1").status, restored.pos("S1", "A").reserved) == ("expired", 0)


def test_count_after_restore_still_keeps_later_movements() -> None:
    # The movements after the latest count survive the changelog, so a late count is still placed as of its time.
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), at=T0 + 1_000))
    shard.send(sale("S1", ("A", 4), at=T0 + 3_000))
    restored = Shard()
    restored.state = restore(drained(shard.state))
    restored.offsets.update({code: offset + 1 for code, offset in shard.offsets.items()})
    restored.send(count("S1", ("A", 8), at=T0 + 2_000))
    restored.send(sale("S1", ("A", 1), at=T0 + 1_500))  # late: covered by the count
    assert restored.pos("S1", "A").on_hand == 8 - 4


def test_records_are_drained_buckets_then_holds_then_ids() -> None:
    shard, _ = _busy_shard()
    flush = shard.state.drain(NOW)
    assert flush is not None
    kinds = [key.split("|", 1)[0] for key, _ in flush.records]
    order = {"b": 0, "h": 1, "d": 2}
    assert kinds == sorted(kinds, key=order.__getitem__)
    assert set(kinds) == {"b", "h", "d"}
    assert all(key.split("|")[1] == "0" for key, _ in flush.records)
    key, marker = flush.marker
    assert (key, orjson.loads(marker)) == ("m|0", {
        "generation": shard.state.generation, "at": NOW, "since": 0, "clock": T0 + 4_000,
        "inputs": {str(code): offset for code, offset in shard.state.inputs.items()}})


def test_resnapshot_after_restore_rewrites_every_position_to_the_cache() -> None:
    shard, _ = _busy_shard()
    expected = sorted((sku, loc, p) for sku, loc, p in shard.state.positions())
    restored = restore(drained(shard.state))
    restored.resnapshot()
    flush = restored.drain(NOW)
    assert flush is not None
    assert sorted(flush.cache) == expected


def test_snapshots_give_each_changed_position_once_ahead_of_the_drain() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 10), ("B", 2)))
    assert sorted((sku, loc, p.on_hand) for sku, loc, p in shard.state.snapshots()) == [("A", "S1", 10),
                                                                                      ("B", "S1", 2)]
    assert shard.state.snapshots() == []
    shard.send(sale("S1", ("A", 3)))
    flush = shard.state.drain(NOW)
    assert flush is not None
    assert [(sku, loc, p.on_hand) for sku, loc, p in flush.cache] == [("A", "S1", 7)]  # only what is new since
    assert {key for key, _ in flush.records if key.startswith("b|")} == {f"b|0|S1|{bucket_of('A')}",
                                                                         f"b|0|S1|{bucket_of('B')}"}


def test_a_decision_waits_for_the_flush_and_is_published_again_after_a_restart() -> None:
    """A decision is published only once its flush is written; a crash in between leaves it stored but
    unpublished, and its replay is a duplicate: a restarted state names it to publish again."""
    shard = Shard()
    shard.send(receipt("S1", ("A", 10)))
    assert not shard.state.deciding
    shard.send(hold("S1", "R1", ("A", 4)))
    assert shard.state.deciding
    first = drained(shard.state, NOW)
    assert not shard.state.deciding
    assert [h.reservation_id for h in restore(first).recent_decisions()] == ["R1"]
    shard.send(receipt("S1", ("A", 1)))
    second = drained(shard.state, NOW + 600_000)
    assert [h.reservation_id for h in restore(table_after(first, second)).recent_decisions()] == ["R1"]
    shard.send(receipt("S1", ("A", 1)))
    third = drained(shard.state, NOW + 1_200_000)
    assert restore(table_after(first, second, third)).recent_decisions() == []


def test_restore_ignores_deleted_records() -> None:
    state = new_state()
    state.load("h|0|R1", None)
    state.load("b|0|S1|3", None)
    assert snapshot(state) == ({}, {})


def _crash_replay(first: list[Any], second: list[Any], keep: int,
                  ) -> tuple[PartitionState, PartitionState, list[list[Rejection]]]:
    """Run ``first`` and flush it; run ``second`` and write only ``keep`` records of its flush, then crash.
    Recover from the changelog and replay ``second`` from its first offset.

    Returns the state without a crash, the recovered one, and the outcomes of ``second`` without a crash."""
    history = first + second
    sources = sources_of(history)
    calm = Shard()
    run(calm, first, sources[: len(first)])
    first_flush = calm.state.drain(NOW)
    flush_one = [*first_flush.records, first_flush.marker] if first_flush else []
    outcomes = run(calm, second, sources[len(first):])
    flush_two = calm.state.drain(NOW + 10 * 60_000)
    records_two = [*flush_two.records, flush_two.marker] if flush_two else []
    recovered = Shard()
    recovered.state = restore(table_after(flush_one, records_two[:keep]))
    run(recovered, second, sources[len(first):])
    return calm.state, recovered.state, outcomes


@settings(max_examples=300, deadline=None)
@given(history=steps(max_size=20), data=st.data())
def test_crash_inside_a_flush_then_replay_gives_the_same_state(history: list[Any], data: st.DataObject) -> None:
    split = data.draw(st.integers(0, len(history)))
    keep = data.draw(st.integers(0, 40))
    calm, recovered, _ = _crash_replay(history[:split], history[split:], keep)
    assert snapshot(recovered) == snapshot(calm)
    check_invariants(recovered)


def test_crash_replay_of_an_accepted_hold_reserves_once() -> None:
    first = [(receipt("S1", ("A", 3), ("B", 3), event_id="e0"), NOW)]
    second = [(hold("S1", "R1", ("A", 2), ("B", 1), event_id="e1"), NOW), (sale("S1", ("A", 1), event_id="e2"), NOW)]
    for keep in range(6):
        calm, recovered, _ = _crash_replay(first, second, keep)
        assert snapshot(recovered) == snapshot(calm), keep
        assert (recovered.position("S1", "A").reserved, recovered.holds["R1"].status) == (2, "held")


def test_crash_replay_of_a_hold_keeps_the_expiry_the_client_was_told() -> None:
    """The decision reached the cache (and the client) before the crash: a replay later must not move it."""
    shard = Shard()
    shard.send(receipt("S1", ("A", 3), event_id="e0"))
    restart = drained(shard.state)
    decided = shard.send(hold("S1", "R1", ("A", 2), event_id="e1", ttl_seconds=60), NOW, source=Source(
        TOPIC_CODE[TOPIC_FOR_TYPE["reservation"]], 0))
    assert decided == []
    told = shard.state.holds["R1"]
    bucket_only = [r for r in drained(shard.state) if r[0].startswith(("b|", "c|"))]  # crash after the bucket's record
    recovered = Shard()
    recovered.state = restore(table_after(restart, bucket_only))
    recovered.send(hold("S1", "R1", ("A", 2), event_id="e1", ttl_seconds=60), NOW + 45_000,
                   source=Source(TOPIC_CODE[TOPIC_FOR_TYPE["reservation"]], 0))
    again = recovered.state.holds["R1"]
    assert (again.status, again.expires_ms, again.decided_ms) == (told.status, told.expires_ms, told.decided_ms)
    assert recovered.pos("S1", "A").reserved == 2


def test_replayed_unknown_release_does_not_release_a_later_hold() -> None:
    # Crash after the changelog was written, before the input offsets were committed: the batch replays.
    history = [(receipt("S1", ("A", 1), event_id="e0"), NOW),
               (release("S1", "R1", event_id="e1"), NOW),  # arrives before its hold: dead-lettered
               (hold("S1", "R1", ("A", 1), event_id="e2"), NOW)]
    shard = Shard()
    assert [[r.reason for r in o] for o in run(shard, history)] == [[], ["unknown_reservation"], []]
    recovered = Shard()
    recovered.state = restore(drained(shard.state))
    run(recovered, history, sources_of(history))
    assert recovered.state.holds["R1"].status == "held"
    check_invariants(recovered.state)


def test_crash_replay_keeps_a_refused_hold_refused() -> None:
    first = [(receipt("S1", ("A", 3), event_id="e0"), NOW)]
    second = [(hold("S1", "R1", ("A", 5), event_id="e1"), NOW),  # refused: ATS 3
              (hold("S1", "R2", ("A", 2), event_id="e2"), NOW)]  # held
    calm, recovered, _ = _crash_replay(first, second, keep=1)  # only the bucket record was written
    assert (calm.holds["R1"].status, calm.holds["R2"].status) == ("rejected", "held")
    assert recovered.holds["R1"].status == "rejected"
    check_invariants(recovered)


def test_crash_replay_does_not_redecide_a_refused_hold() -> None:
    first = [(receipt("S1", ("A", 1), event_id="e0"), NOW)]
    second = [(hold("S1", "R1", ("A", 3), event_id="e1"), NOW),  # refused: ATS 1
              (receipt("S1", ("A", 5), event_id="e2"), NOW)]
    calm, recovered, _ = _crash_replay(first, second, keep=1)
    assert calm.holds["R1"].status == "rejected"
    assert recovered.holds["R1"].status == "rejected"
    assert snapshot(recovered) == snapshot(calm)


# ---- transfers across two shards ------------------------------------------------------------------

def test_transfer_between_shards_conserves_stock() -> None:
    origin, destination = Shard(0, owns={"DC"}), Shard(1, owns={"S9"})

    def total() -> int:
        dc, s9 = origin.pos("DC", "A"), destination.pos("S9", "A")
        return dc.on_hand + dc.in_transit + s9.on_hand + s9.in_transit

    origin.send(receipt("DC", ("A", 10)))
    assert total() == 10
    shipped = transfer("shipped", "DC", "S9", ("A", 4))
    origin.send(shipped)
    assert total() == 6  # the destination has not seen its leg yet
    destination.send(shipped, routed=True)
    assert total() == 10
    assert (origin.pos("DC", "A").on_hand, destination.pos("S9", "A").in_transit) == (6, 4)
    destination.send(shipped, routed=True)  # a redelivered leg
    assert total() == 10
    received = transfer("received", "DC", "S9", ("A", 4))
    assert origin.send(received) == []  # not the origin's leg
    destination.send(received)
    assert (destination.pos("S9", "A").on_hand, destination.pos("S9", "A").in_transit) == (4, 0)
    assert total() == 10


@settings(max_examples=200, deadline=None)
@given(quantities=st.lists(st.integers(1, 20), min_size=1, max_size=8), data=st.data())
def test_shipped_then_received_conserves_on_hand_plus_in_transit(quantities: list[int],
                                                                 data: st.DataObject) -> None:
    origin, destination = Shard(0, owns={"DC"}), Shard(1, owns={"S9"})
    stock = data.draw(st.integers(1, 200))
    origin.send(receipt("DC", ("A", stock)))
    # Each transfer: the origin ships, the destination gets its leg, then the goods arrive; the
    # transfers interleave at random but each one's three steps stay in order.
    pending = {i: ["ship", "leg", "receive"] for i in range(len(quantities))}
    while pending:
        i = data.draw(st.sampled_from(sorted(pending)))
        step = pending[i].pop(0)
        if not pending[i]:
            del pending[i]
        status = "received" if step == "receive" else "shipped"
        raw = transfer(status, "DC", "S9", ("A", quantities[i]), event_id=f"t{i}-{status}", transfer_id=f"t{i}")
        if step == "ship":
            origin.send(raw)
        else:
            destination.send(raw, routed=step == "leg")
        dc, s9 = origin.pos("DC", "A"), destination.pos("S9", "A")
        in_flight = sum(q for j, q in enumerate(quantities) if j in pending and pending[j] == ["leg", "receive"])
        assert dc.on_hand + s9.on_hand + s9.in_transit + in_flight == stock
    s9 = destination.pos("S9", "A")
    assert (s9.on_hand, s9.in_transit) == (sum(quantities), 0)
    assert origin.pos("DC", "A").on_hand == stock - sum(quantities)


# ---- where a restarted worker resumes each input -----------------------------------------------------

def test_the_marker_names_the_next_offset_of_every_input_consumed() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 5)))
    shard.send(receipt("S1", ("A", 1)))
    shard.send(sale("S1", ("A", 1)))
    restored = restore(drained(shard.state))
    assert restored.expects(TOPIC_CODE[TOPIC_FOR_TYPE["receipt"]]) == 2
    assert restored.expects(TOPIC_CODE[TOPIC_FOR_TYPE["sale"]]) == 1
    assert restored.expects(TOPIC_CODE[TOPIC_FOR_TYPE["transfer"]]) is None


def test_a_tick_that_changes_nothing_writes_no_marker_but_the_next_flush_records_it() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 5), at=NOW))  # its ERP window is still open at NOW + 1
    shard.state.drain(NOW)
    shard.tick(NOW + 1)
    assert shard.state.drain(NOW + 1) is None
    shard.send(sale("S1", ("A", 1), at=NOW))
    assert restore(drained(shard.state)).expects(ROUTED_CODE) == 1


def test_begin_only_sets_inputs_never_consumed() -> None:
    state = new_state()
    state.consumed(Source(0, 41))
    state.begin(0, 7)
    state.begin(1, 7)
    assert (state.expects(0), state.expects(1)) == (42, 7)


def replay_through_gate(shard: Shard, history: list[Any], sources: list[Source]) -> None:
    """Replay as the worker's gate does: what the state says it has consumed is skipped, not applied."""
    for (item, now), source in zip(history, sources, strict=True):
        expected = shard.state.expects(source.code)
        if expected is not None and source.offset < expected:
            continue
        run(shard, [(item, now)], [source])


@settings(max_examples=300, deadline=None)
@given(history=steps(max_size=20), data=st.data())
def test_after_a_crash_a_replay_from_any_earlier_offset_gives_the_same_state(history: list[Any],
                                                                             data: st.DataObject) -> None:
    """Committed offsets may lag the state by anything (or be lost): replaying from the start of
    the input, through the gate's rule, must still give the state of a run without a crash."""
    split = data.draw(st.integers(0, len(history)))
    keep = data.draw(st.integers(0, 40))
    first, second = history[:split], history[split:]
    sources = sources_of(history)
    calm = Shard()
    run(calm, history, sources)
    crashed = Shard()
    run(crashed, first, sources[:split])
    first_flush = crashed.state.drain(NOW)
    flush_one = [*first_flush.records, first_flush.marker] if first_flush else []
    run(crashed, second, sources[split:])
    flush_two = crashed.state.drain(NOW + 10 * 60_000)
    records_two = [*flush_two.records, flush_two.marker] if flush_two else []
    recovered = Shard()
    recovered.state = restore(table_after(flush_one, records_two[:keep]))
    start = data.draw(st.integers(0, split))  # where the consumer group's committed offsets point
    replay_through_gate(recovered, history[start:], sources[start:])
    assert snapshot(recovered.state) == snapshot(calm.state)
