"""Line operations on one position and the count rules of the contract.

Expected values are worked by hand from DESIGN.md ("effect per line", "count: on_hand := counted qty as of
occurred_at") or checked against a reference model written from that text.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.ledger import (
    HANDLERS,
    LOG_FOLD_AT,
    LOG_KEEP,
    ON_HAND_MOVEMENTS,
    CountOutsideHorizon,
    Movements,
    apply_count,
    move_on_hand,
)
from availability.model import EMPTY, Position, ats

DAY = 86_400_000
HORIZON = 30 * DAY


def run(ops: Iterable[tuple[str, int, int, str]], start: Position = EMPTY,
        horizon_ms: int = HORIZON) -> tuple[Position, list[tuple[str, int]]]:
    """Apply ``(operation, qty, at, ref)`` in order; the final position and every movement."""
    position, movements = start, []
    for operation, qty, at, ref in ops:
        position, moved = HANDLERS[operation](position, qty, at, ref, horizon_ms)
        movements.extend(moved)
    return position, movements


def on_hand_sum(movements: Iterable[tuple[str, int]]) -> int:
    return sum(qty for kind, qty in movements if kind in ON_HAND_MOVEMENTS)


# ---- the formula ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("on_hand", "reserved", "safety", "expected"), [
    (10, 0, 0, 10), (10, 3, 2, 5), (10, 8, 2, 0), (10, 8, 5, 0), (-4, 0, 0, 0), (0, 0, 0, 0), (5, 0, 5, 0),
])
def test_ats_formula(on_hand: int, reserved: int, safety: int, expected: int) -> None:
    assert ats(on_hand, reserved, safety) == expected
    assert Position(on_hand=on_hand, reserved=reserved, safety_stock=safety).ats == expected


@given(st.integers(-10**6, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_ats_is_never_negative_and_never_above_on_hand(on_hand: int, reserved: int, safety: int) -> None:
    value = ats(on_hand, reserved, safety)
    assert value >= 0
    assert value <= max(0, on_hand)
    assert value == max(0, on_hand - reserved - safety)


# ---- each handler ---------------------------------------------------------------------------------

def test_sale_takes_on_hand_even_below_zero() -> None:
    position, movements = HANDLERS["sale"](Position(on_hand=2), 5, 1_000, "e1", HORIZON)
    assert position.on_hand == -3
    assert movements == (("sale", -5),)
    assert position.updated_ms == 1_000


def test_sellable_return_adds_to_on_hand() -> None:
    position, movements = HANDLERS["return"](Position(on_hand=2), 3, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.damaged) == (5, 0)
    assert movements == (("return", 3),)


def test_damaged_return_adds_to_damaged_only() -> None:
    position, movements = HANDLERS["return_damaged"](Position(on_hand=2), 3, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.damaged) == (2, 3)
    assert movements == (("return_damaged", 3),)
    assert "return_damaged" not in ON_HAND_MOVEMENTS


def test_receipt_adds_to_on_hand() -> None:
    position, movements = HANDLERS["receipt"](EMPTY, 7, 1_000, "e1", HORIZON)
    assert position.on_hand == 7
    assert movements == (("receipt", 7),)


def test_transfer_out_takes_on_hand() -> None:
    position, movements = HANDLERS["transfer_out"](Position(on_hand=10), 4, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.in_transit) == (6, 0)
    assert movements == (("transfer_out", -4),)


def test_shipped_destination_leg_adds_in_transit_only() -> None:
    position, movements = HANDLERS["transfer_ship_in"](Position(on_hand=1), 4, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.in_transit) == (1, 4)
    assert movements == ()


def test_received_moves_in_transit_to_on_hand() -> None:
    position, movements = HANDLERS["transfer_in"](Position(on_hand=1, in_transit=4), 4, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.in_transit) == (5, 0)
    assert movements == (("transfer_in", 4),)


def test_received_in_transit_floors_at_zero() -> None:
    position, _ = HANDLERS["transfer_in"](Position(in_transit=2), 5, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.in_transit) == (5, 0)


@pytest.mark.parametrize(("delta", "expected"), [(3, 13), (-4, 6), (-15, -5)])
def test_delta_adjustment(delta: int, expected: int) -> None:
    position, movements = HANDLERS["adjustment"](Position(on_hand=10), delta, 1_000, "e1", HORIZON)
    assert position.on_hand == expected
    assert movements == (("adjustment", delta),)


def test_policy_sets_safety_stock() -> None:
    position, movements = HANDLERS["policy"](Position(on_hand=10, safety_stock=2), 6, 1_000, "e1", HORIZON)
    assert (position.on_hand, position.safety_stock, position.ats) == (10, 6, 4)
    assert movements == ()
    position, _ = HANDLERS["policy"](position, 0, 2_000, "e2", HORIZON)
    assert position.safety_stock == 0


def test_updated_is_the_latest_business_time() -> None:
    position, _ = run([("receipt", 1, 5_000, "a"), ("sale", 1, 3_000, "b"), ("return_damaged", 1, 4_000, "c")])
    assert position.updated_ms == 5_000


# ---- counts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("before", "counted", "implied"), [(7, 10, 3), (7, 2, -5), (7, 7, None), (-3, 0, 3)])
def test_count_implies_an_adjustment_of_new_minus_old(before: int, counted: int, implied: int | None) -> None:
    position, movements = apply_count(Position(on_hand=before), counted, 1_000, "c1", HORIZON)
    assert position.on_hand == counted
    assert movements == ((("adjustment", implied),) if implied is not None else ())
    assert position.count_ms == 1_000


def test_count_keeps_later_movements_on_top() -> None:
    # receipt 10 @100, sale 3 @300 (both already applied), then a count of 20 taken @200 arrives:
    # as of 200 the books say 20; the sale at 300 happened after it → 20 - 3 = 17.
    position, movements = run([("receipt", 10, 100, "r"), ("sale", 3, 300, "s"), ("count", 20, 200, "c")])
    assert position.on_hand == 17
    assert movements[-1] == ("adjustment", 17 - 7)
    assert on_hand_sum(movements) == 17


@pytest.mark.parametrize("late_at", [150, 200])  # before, and exactly at, the count
def test_late_movement_covered_by_a_count_posts_with_its_offset(late_at: int) -> None:
    counted, _ = run([("receipt", 10, 100, "r"), ("count", 20, 200, "c")])
    position, movements = HANDLERS["sale"](counted, 2, late_at, "late", HORIZON)
    assert position.on_hand == 20
    assert movements == (("sale", -2), ("adjustment", 2))


def test_late_covered_movement_of_every_on_hand_kind() -> None:
    counted, _ = run([("count", 20, 200, "c")])
    for operation, kind, sign in [("sale", "sale", -1), ("return", "return", 1), ("receipt", "receipt", 1),
                                  ("transfer_out", "transfer_out", -1), ("transfer_in", "transfer_in", 1),
                                  ("adjustment", "adjustment", 1)]:
        position, movements = HANDLERS[operation](counted, 4, 199, "late", HORIZON)
        assert position.on_hand == 20, operation
        assert movements == ((kind, 4 * sign), ("adjustment", -4 * sign)), operation


def test_late_received_transfer_still_clears_in_transit() -> None:
    # A received leg covered by a count no longer moves on_hand, but the goods are no longer in transit.
    start = Position(in_transit=4)
    counted, _ = apply_count(start, 20, 200, "c", HORIZON)
    position, _ = HANDLERS["transfer_in"](counted, 4, 150, "late", HORIZON)
    assert (position.on_hand, position.in_transit) == (20, 0)


def test_movement_after_the_count_applies() -> None:
    counted, _ = run([("count", 20, 200, "c")])
    position, movements = HANDLERS["sale"](counted, 2, 201, "s", HORIZON)
    assert position.on_hand == 18
    assert movements == (("sale", -2),)


def test_older_count_changes_nothing() -> None:
    counted, _ = run([("receipt", 10, 100, "r"), ("count", 20, 200, "c")])
    position, movements = apply_count(counted, 50, 150, "older", HORIZON)
    assert position == counted
    assert movements == ()


def test_reapplied_count_changes_nothing() -> None:
    counted, _ = run([("count", 20, 200, "c"), ("sale", 1, 300, "s")])
    position, movements = apply_count(counted, 20, 200, "c", HORIZON)
    assert position == counted
    assert movements == ()


def test_newer_count_replaces_the_older() -> None:
    position, movements = run([("count", 20, 200, "c1"), ("sale", 5, 250, "s"), ("receipt", 4, 350, "r"),
                               ("count", 9, 300, "c2")])
    # as of 300: 9; the receipt at 350 stays on top; the sale at 250 is covered by the count at 300.
    assert position.on_hand == 13
    assert on_hand_sum(movements) == 13


def test_same_time_counts_agree_whatever_the_order() -> None:
    one, _ = run([("count", 20, 200, "c-a"), ("count", 30, 200, "c-b")])
    other, _ = run([("count", 30, 200, "c-b"), ("count", 20, 200, "c-a")])
    assert one.on_hand == other.on_hand
    assert one.on_hand in {20, 30}


# ---- the horizon ----------------------------------------------------------------------------------

def _receipts(n: int, step: int) -> list[tuple[str, int, int, str]]:
    return [("receipt", 1, i * step, f"r{i}") for i in range(n)]


def test_log_folds_beyond_the_horizon() -> None:
    # 65 receipts one second apart with a 10 s horizon: at the 65th the log exceeds 64 entries and
    # everything older than (64 s - 10 s) = 54 s is folded into on_hand.
    position, _ = run(_receipts(LOG_FOLD_AT + 1, 1_000), horizon_ms=10_000)
    assert position.on_hand == LOG_FOLD_AT + 1
    assert position.floor_ms == 54_000
    assert min(t for t, _ in position.log) == 54_000
    with pytest.raises(CountOutsideHorizon):
        apply_count(position, 0, 53_999, "too-old", 10_000)
    counted, movements = apply_count(position, 0, 54_000, "c", 10_000)
    assert counted.on_hand == 10  # the receipts at 55..64 s stay on top
    assert movements == (("adjustment", 10 - (LOG_FOLD_AT + 1)),)


def test_movement_older_than_the_floor_still_counts() -> None:
    position, _ = run(_receipts(LOG_FOLD_AT + 1, 1_000), horizon_ms=10_000)
    late, movements = move_on_hand(position, -2, 1_500, "sale", 10_000)
    assert late.on_hand == position.on_hand - 2
    assert movements == (("sale", -2),)


def test_log_folds_by_length_within_the_horizon() -> None:
    # 192 receipts one second apart, all within the horizon: the log still never outgrows LOG_FOLD_AT
    # entries (a hot SKU's log is copied at every sale and encoded at every flush).
    n = 3 * LOG_FOLD_AT
    position, _ = run(_receipts(n, 1_000), horizon_ms=HORIZON)
    assert position.on_hand == n
    assert LOG_KEEP <= len(position.log) <= LOG_FOLD_AT
    assert position.floor_ms == min(t for t, _ in position.log)
    newest_kept = n - len(position.log)  # receipts newest_kept..n-1 are in the log
    assert position.floor_ms == newest_kept * 1_000
    # A count at the floor is placed exactly: the receipts after it stay on top.
    counted, movements = apply_count(position, 0, position.floor_ms, "c", HORIZON)
    assert counted.on_hand == len(position.log) - 1
    assert on_hand_sum(movements) == counted.on_hand - position.on_hand
    with pytest.raises(CountOutsideHorizon):
        apply_count(position, 0, position.floor_ms - 1, "too-old", HORIZON)


def test_folding_by_length_cuts_by_time_not_arrival() -> None:
    # Late movements are appended out of time order; the fold keeps the newest by occurred time, so
    # the floor never passes over a kept entry and a count at the floor stays exact.
    ops = [("receipt", 1, i * 1_000, f"r{i}") for i in range(LOG_FOLD_AT)]
    ops.insert(10, ("sale", 1, 63_500, "late-but-new"))  # arrives early in the list, occurs near the end
    position, _ = run(ops, horizon_ms=HORIZON)
    assert (63_500, -1) in position.log
    assert all(t >= (position.floor_ms or 0) for t, _ in position.log)


# ---- properties: order independence and conservation ----------------------------------------------

MOVES = ["sale", "receipt", "return", "adjustment", "transfer_out"]
SIGN = {"sale": -1, "receipt": 1, "return": 1, "adjustment": 1, "transfer_out": -1}

movement_ops = st.tuples(st.sampled_from(MOVES), st.integers(1, 50), st.integers(0, 20))
count_ops = st.tuples(st.just("count"), st.integers(0, 100), st.integers(0, 20))


def _with_refs(raw: list[tuple[str, int, int]]) -> list[tuple[str, int, int, str]]:
    return [(operation, qty, at * 1_000, f"e{i}") for i, (operation, qty, at) in enumerate(raw)]


def _net_by_time(log: tuple[tuple[int, int], ...]) -> dict[int, int]:
    """The remembered movements as net quantity per instant (how they are grouped is the ledger's business)."""
    net: dict[int, int] = {}
    for at, qty in log:
        net[at] = net.get(at, 0) + qty
    return {at: qty for at, qty in net.items() if qty}


def _reference_on_hand(ops: list[tuple[str, int, int, str]]) -> int:
    """The contract, directly: the latest count as of its time, plus what moved after it."""
    counts = [(at, qty) for operation, qty, at, _ in ops if operation == "count"]
    moves = [(at, SIGN[operation] * qty) for operation, qty, at, _ in ops if operation != "count"]
    if not counts:
        return sum(delta for _, delta in moves)
    count_at, counted = max(counts)
    return counted + sum(delta for at, delta in moves if at > count_at)


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.one_of(movement_ops, count_ops), min_size=1, max_size=12), data=st.data())
def test_any_order_gives_the_same_on_hand(raw: list[tuple[str, int, int]], data: st.DataObject) -> None:
    ops = _with_refs(raw)
    baseline, _ = run(ops)
    shuffled = data.draw(st.permutations(ops))
    position, movements = run(shuffled)
    assert position.on_hand == baseline.on_hand
    assert (position.count_ms, position.count_id, position.updated_ms) == (
        baseline.count_ms, baseline.count_id, baseline.updated_ms)
    assert _net_by_time(position.log) == _net_by_time(baseline.log)
    assert on_hand_sum(movements) == position.on_hand


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.one_of(movement_ops, count_ops), min_size=1, max_size=12).filter(
    lambda ops: len({at for operation, _, at in ops if operation == "count"})
    == sum(1 for operation, _, _ in ops if operation == "count")),
    data=st.data())
def test_on_hand_follows_the_contract_in_any_order(raw: list[tuple[str, int, int]], data: st.DataObject) -> None:
    # Counts at distinct times: which one is latest is then unambiguous.
    ops = data.draw(st.permutations(_with_refs(raw)))
    position, movements = run(ops)
    assert position.on_hand == _reference_on_hand(ops)
    assert on_hand_sum(movements) == position.on_hand  # conservation from the empty position


def test_every_order_of_a_small_history_agrees() -> None:
    ops = [("receipt", 10, 100, "r"), ("sale", 3, 300, "s"), ("count", 20, 200, "c"), ("sale", 2, 150, "late"),
           ("count", 5, 50, "old"), ("return", 1, 200, "at-count")]
    # Worked: the latest count says 20 as of 200; only the sale at 300 occurred after → 17.
    for order in itertools.permutations(ops):
        position, movements = run(order)
        assert position.on_hand == 17
        assert on_hand_sum(movements) == 17


@settings(max_examples=100, deadline=None)
@given(raw=st.lists(st.one_of(movement_ops, count_ops), min_size=LOG_FOLD_AT, max_size=3 * LOG_FOLD_AT))
def test_conservation_survives_folding(raw: list[tuple[str, int, int]]) -> None:
    # Times in order with a short horizon, so the log folds; conservation must still hold.
    ops = [(operation, qty, i * 1_000, f"e{i}") for i, (operation, qty, _) in enumerate(raw)]
    position, movements = run(ops, horizon_ms=5_000)
    assert on_hand_sum(movements) == position.on_hand
    assert position.on_hand == _reference_on_hand(ops)


def test_handlers_cover_every_line_operation() -> None:
    assert set(HANDLERS) == {"sale", "return", "return_damaged", "receipt", "transfer_out", "transfer_ship_in",
                             "transfer_in", "adjustment", "count", "policy"}


def _movement_types(movements: Movements) -> set[str]:
    return {kind for kind, _ in movements}


def test_only_contract_movement_types_are_posted() -> None:
    contract = {"sale", "return", "return_damaged", "receipt", "transfer_out", "transfer_in", "adjustment"}
    seen: set[str] = set()
    position = Position(in_transit=10)
    for operation in HANDLERS:
        position, moved = HANDLERS[operation](position, 3, 1_000, "e", HORIZON)
        seen |= _movement_types(moved)
    assert seen <= contract
    assert contract - {"return_damaged"} == ON_HAND_MOVEMENTS


@settings(max_examples=150, deadline=None)
@given(raw=st.lists(st.tuples(st.sampled_from(MOVES), st.integers(1, 50), st.integers(0, 400)),
                    min_size=LOG_FOLD_AT + 1, max_size=4 * LOG_FOLD_AT),
       count=st.tuples(st.integers(0, 100), st.integers(0, 400)))
def test_a_bounded_log_places_a_count_like_an_unbounded_one(raw: list[tuple[str, int, int]],
                                                               count: tuple[int, int]) -> None:
    # Movements in any time order, then a count: where the folded log can still place the count, the
    # answer is the contract's; where it cannot, the count is refused and nothing changes.
    ops = _with_refs(raw)
    position, _ = run(ops, horizon_ms=HORIZON)
    assert len(position.log) <= LOG_FOLD_AT
    counted_qty, at = count[0], count[1] * 1_000
    try:
        counted, movements = apply_count(position, counted_qty, at, "c", HORIZON)
    except CountOutsideHorizon:
        assert position.floor_ms is not None
        assert at < position.floor_ms
        return
    assert counted.on_hand == _reference_on_hand([*ops, ("count", counted_qty, at, "c")])
    assert on_hand_sum(movements) == counted.on_hand - position.on_hand
