"""A position's history: every change recorded with its effect and result, copies dropped, counts given
the late movements they absorbed, pages; and, as a property, the history explains the position."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from availability import history
from availability.history import BadCursor, present, replay
from availability.shard import PartitionState
from availability.wire import rfc3339

from .test_shard import HORIZON, NOW, T0, WINDOW, Shard, count, hold, policy, receipt, release, sale, transfer

S, D, SKU = "S1", "DC1", "SKU-1"
MIN = 60_000


def kept_shard() -> Shard:
    shard = Shard()
    shard.state = PartitionState(0, horizon_ms=HORIZON, dedupe_window_ms=WINDOW, history=True)
    return shard


def entries(shard: Shard) -> dict[tuple[str, str], list[list[Any]]]:
    """Each position's entries recorded since the last call, as the cache keeps them (newest first,
    through JSON)."""
    return {position: [orjson.loads(entry) for entry in reversed(pushed)]
            for position, pushed in shard.state.history().items()}


def items(wire: list[list[Any]]) -> list[dict[str, Any]]:
    return [item for _, item in present(wire, since_ms=0)]


def test_a_store_day_reads_back_with_every_effect() -> None:
    shard = kept_shard()
    shard.send(receipt(S, (SKU, 10), at=T0, event_id="r1", source="wms"))
    shard.send(sale(S, (SKU, 2), at=T0 + 10 * MIN, event_id="s1", source="pos-7"))
    shard.send(count(S, (SKU, 7), at=T0 + 20 * MIN, event_id="c1"))  # 8 on the books, 7 on the shelf
    shard.send(sale(S, (SKU, 1), at=T0 + 15 * MIN, event_id="s-late"))  # an offline till, before the count
    shard.send(transfer("shipped", S, D, (SKU, 3), at=T0 + 30 * MIN, event_id="t1"))
    shard.send(hold(S, "R1", (SKU, 2), at=T0 + 40 * MIN, event_id="h1"))
    shard.send(sale(S, (SKU, 2), at=T0 + 41 * MIN, event_id="s2", reservation_id="R1"))
    shown = items(entries(shard)[(SKU, S)])

    assert [(i["event_id"], i["movement"]) for i in shown] == [
        ("s2", "hold_consumed"), ("s2", "sale"), ("h1", "hold"), ("t1", "transfer_out"), ("s-late", "sale"),
        ("c1", "count"), ("s1", "sale"), ("r1", "receipt")]
    by_movement = {(i["event_id"], i["movement"]): i for i in shown}
    assert by_movement[("r1", "receipt")]["effect"] == {"on_hand": 10, "reserved": 0, "in_transit": 0, "damaged": 0,
                                                        "safety_stock": 0}
    assert by_movement[("r1", "receipt")]["source"] == "wms"
    counted = by_movement[("c1", "count")]
    assert counted["count"] == {"implied_delta": -1, "absorbed": ["s-late"]}
    assert counted["result"]["on_hand"] == 7
    late = by_movement[("s-late", "sale")]
    assert late["effect"]["on_hand"] == 0
    assert late["covered_by_count"] == "c1"
    assert by_movement[("h1", "hold")]["effect"]["reserved"] == 2
    assert by_movement[("h1", "hold")]["reservation_id"] == "R1"
    assert by_movement[("s2", "hold_consumed")]["effect"]["reserved"] == -2
    assert shown[0]["result"] == {"on_hand": 2, "reserved": 0, "in_transit": 0, "damaged": 0, "safety_stock": 0}
    assert shown[0]["ats"] == shard.pos(S, SKU).ats == 2
    assert shown[0]["applied_at"] == rfc3339(NOW)


def test_the_destination_of_a_transfer_sees_it_in_transit_then_received() -> None:
    shard = kept_shard()
    shard.send(transfer("shipped", S, D, (SKU, 3), event_id="t1"))
    shard.send(transfer("received", S, D, (SKU, 3), at=T0 + MIN, event_id="t2"))
    shown = items(entries(shard)[(SKU, D)])
    assert [(i["movement"], i["effect"]["in_transit"], i["effect"]["on_hand"]) for i in shown] == [
        ("transfer_in", -3, 3), ("transfer_ship_in", 3, 0)]


def test_an_expired_hold_is_recorded_without_an_event() -> None:
    shard = kept_shard()
    shard.send(receipt(S, (SKU, 5)))
    shard.send(hold(S, "R1", (SKU, 2), ttl_seconds=60))
    shard.tick(NOW + 61_000)
    expired = items(entries(shard)[(SKU, S)])[0]
    assert (expired["movement"], expired["event_id"], expired["reservation_id"]) == ("hold_expired", None, "R1")
    assert expired["effect"]["reserved"] == -2


def test_an_event_applied_again_is_shown_once() -> None:
    shard = kept_shard()
    shard.send(receipt(S, (SKU, 5), event_id="r1"))
    first = entries(shard)[(SKU, S)]
    again = kept_shard()  # a crash before the first application was stored: applied again, recorded again
    again.send(receipt(S, (SKU, 5), event_id="r1"))
    second = entries(again)[(SKU, S)]
    assert first[0][0] == second[0][0]
    assert len(items(second + first)) == 1


def test_a_duplicate_records_nothing() -> None:
    shard = kept_shard()
    shard.send(receipt(S, (SKU, 5), event_id="r1"))
    shard.send(receipt(S, (SKU, 5), event_id="r1"))
    assert len(entries(shard)[(SKU, S)]) == 1


def test_no_history_is_recorded_unless_asked() -> None:
    shard = Shard()
    shard.send(receipt(S, (SKU, 5)))
    assert shard.state.history() == {}


def test_the_horizon_drops_older_entries() -> None:
    shard = kept_shard()
    shard.send(receipt(S, (SKU, 5)), now_ms=NOW)
    shard.send(sale(S, (SKU, 1)), now_ms=NOW + 10 * MIN)
    wire = entries(shard)[(SKU, S)]
    assert [i["movement"] for _, i in present(wire, since_ms=NOW + MIN)] == ["sale"]


def test_pages_follow_the_cursor_even_when_newer_entries_arrive() -> None:
    shard = kept_shard()
    for n in range(7):
        shard.send(receipt(S, (SKU, 1), event_id=f"r{n}"), now_ms=NOW + n)
    wire = entries(shard)[(SKU, S)]
    shown = present(wire, since_ms=0)
    first = history.page(shown, limit=3, cursor=None)
    assert [i["event_id"] for i in first.items] == ["r6", "r5", "r4"]
    shard.send(receipt(S, (SKU, 1), event_id="r7"), now_ms=NOW + 7)
    newer = present(entries(shard)[(SKU, S)] + wire, since_ms=0)
    second = history.page(newer, limit=3, cursor=first.cursor)
    assert [i["event_id"] for i in second.items] == ["r3", "r2", "r1"]
    last = history.page(newer, limit=3, cursor=second.cursor)
    assert [i["event_id"] for i in last.items] == ["r0"]
    assert last.cursor is None
    trimmed = [entry for entry in newer if entry[1]["event_id"] != "r4"]  # the cursor's entry is gone
    assert [i["event_id"] for i in history.page(trimmed, limit=2, cursor=first.cursor).items] == ["r3", "r2"]


def test_a_cursor_not_given_by_the_api_is_refused() -> None:
    for bad in ("x", "!!!", history.encode_cursor("a", 1)[:-2] + "zz"):
        try:
            history.page([], limit=1, cursor=bad)
        except BadCursor:
            continue
        raise AssertionError(f"{bad!r} accepted")


_step = st.one_of(
    st.tuples(st.just("receipt"), st.integers(1, 20), st.integers(0, 120)),
    st.tuples(st.just("sale"), st.integers(1, 20), st.integers(0, 120)),
    st.tuples(st.just("count"), st.integers(0, 40), st.integers(0, 120)),
    st.tuples(st.just("policy"), st.integers(0, 5), st.integers(0, 120)),
    st.tuples(st.just("hold"), st.integers(1, 5), st.integers(0, 120)),
    st.tuples(st.just("release"), st.integers(0, 0), st.integers(0, 120)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_step, min_size=1, max_size=40))
def test_the_history_explains_the_position(steps: list[tuple[str, int, int]]) -> None:
    """Replaying the deltas after the latest count, from what it left, gives the position; and the sum
    of every effect from nothing gives it too (no change goes unrecorded)."""
    shard = kept_shard()
    holds = 0
    for n, (kind, qty, minute) in enumerate(steps):
        at = T0 + minute * MIN
        if kind == "receipt":
            shard.send(receipt(S, (SKU, qty), at=at))
        elif kind == "sale":
            shard.send(sale(S, (SKU, qty), at=at))
        elif kind == "count":
            shard.send(count(S, (SKU, qty), at=at, event_id=f"c{n}"))
        elif kind == "policy":
            shard.send(policy(S, (SKU, qty), at=at))
        elif kind == "hold":
            holds += 1
            shard.send(hold(S, f"R{holds}", (SKU, qty), at=at))
        elif holds:
            shard.send(release(S, f"R{holds}", at=at))
    shown = items(entries(shard).get((SKU, S), []))
    position = shard.pos(S, SKU)
    now = dict(zip(history.QUANTITIES, history.quantities(position), strict=True))
    total = dict.fromkeys(history.QUANTITIES, 0)
    for item in shown:
        for quantity, change in item["effect"].items():
            total[quantity] += change
    assert total == now
    replayed = replay(shown)
    if any(item["movement"] == "count" for item in shown):
        assert replayed == now
    if shown:
        assert shown[0]["result"] == now
        assert shown[0]["ats"] == position.ats
