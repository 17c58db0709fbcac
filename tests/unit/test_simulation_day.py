"""The peak-day generator, without I/O: seeded, Zipf-popular, the mix it promises, and never a sale or a
shipment beyond the stock it believes is there. Expected values come from the contract's arithmetic,
worked here independently of the generator's own book."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from simulation.catalog import Zipf
from simulation.day import MOVEMENT_KINDS, Day, HoldRequest, Produce
from simulation.offline import play
from simulation.profiles import PROFILES, Spike

START_MS = 1_795_766_400_000  # 2026-11-27T00:00:00Z, a window boundary
SMOKE = PROFILES["smoke"]


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def contract_on_hand(produced: list[Produce]) -> dict[tuple[str, str], int]:
    """on_hand per position by DESIGN.md: a count sets on_hand as of its time, movements that occurred
    after it stay on top whenever they arrive, earlier ones no longer count; a duplicate changes nothing."""
    seen: set[str] = set()
    movements: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for produce in produced:
        event = produce.event
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        at = _ms(event["occurred_at"])
        for line in event["lines"]:
            kind, sku = event["type"], line["sku"]
            if kind == "sale":
                movements[(event["location_id"], sku)].append((at, -line["qty"]))
            elif kind == "receipt" or (kind == "return" and line.get("disposition") != "damaged"):
                movements[(event["location_id"], sku)].append((at, line["qty"]))
            elif kind == "transfer":
                where = event["from_location_id"] if event["status"] == "shipped" else event["to_location_id"]
                sign = -1 if event["status"] == "shipped" else 1
                movements[(where, sku)].append((at, sign * line["qty"]))
            elif kind == "adjustment":
                key = (event["location_id"], sku)
                if key not in counts or counts[key][0] < at:
                    counts[key] = (at, line["qty"])
    out = {}
    for key in set(movements) | set(counts):
        since, base = counts.get(key, (-1, 0))
        out[key] = base + sum(delta for at, delta in movements[key] if at > since)
    return out


def test_the_same_seed_gives_the_same_day_and_another_seed_another() -> None:
    first, first_actions = play(Day(SMOKE, seed=5, tag="t", start_ms=START_MS), seconds=4)
    again, again_actions = play(Day(SMOKE, seed=5, tag="t", start_ms=START_MS), seconds=4)
    other, _ = play(Day(SMOKE, seed=6, tag="t", start_ms=START_MS), seconds=4)
    assert [p.event for p in first] == [p.event for p in again]
    assert first_actions == again_actions
    assert [p.event for p in first] != [p.event for p in other]


def test_zipf_popularity_falls_as_one_over_rank() -> None:
    zipf, rng = Zipf(1_000, 1.0), random.Random(3)
    drawn = Counter(zipf.draw(rng) for _ in range(200_000))
    harmonic = sum(1 / k for k in range(1, 1_001))
    assert drawn[0] / 200_000 == pytest.approx(1 / harmonic, rel=0.05)
    assert drawn[0] / drawn[9] == pytest.approx(10, rel=0.2)
    assert drawn[0] > drawn[9] > drawn[99] > drawn[999]
    assert zipf.share(0) == pytest.approx(1 / harmonic)


def test_the_mix_has_the_shares_the_profile_names() -> None:
    day = Day(SMOKE.with_options(duration_s=60, lines_per_s=400), seed=11, tag="t", start_ms=START_MS)
    produced, _ = play(day)
    lines = Counter()
    for produce in produced:
        lines[produce.kind] += produce.lines
    pos = lines["pos_sale"] + lines["late_sale"]
    day_lines = sum(n for kind, n in lines.items() if not kind.startswith("seed_") and kind != "duplicate")
    assert pos / day_lines > 0.6
    returned = [line for p in produced if p.kind == "return" for line in p.event["lines"]]
    assert len(returned) / pos == pytest.approx(SMOKE.return_share * 1.5, rel=0.5)  # 1.5 lines a return
    damaged = sum(line["disposition"] == "damaged" for line in returned) / len(returned)
    assert damaged == pytest.approx(SMOKE.damaged_share, abs=0.07)
    events = [p for p in produced if not p.kind.startswith("seed_")]
    duplicates = [p for p in events if p.duplicate]
    assert len(duplicates) / len(events) == pytest.approx(SMOKE.duplicate_share, rel=0.6)
    for kind in ("receipt_store", "transfer_shipped", "transfer_received", "count_cycle", "late_sale", "ecom_sale"):
        assert lines[kind], kind


def test_duplicates_redeliver_an_event_already_produced_unchanged() -> None:
    produced, _ = play(Day(SMOKE, seed=2, tag="t", start_ms=START_MS))
    first = {p.event["event_id"]: p.event for p in produced if not p.duplicate}
    duplicates = [p for p in produced if p.duplicate]
    assert duplicates
    assert all(first[p.event["event_id"]] == p.event for p in duplicates)


def test_the_books_end_as_the_contracts_arithmetic_and_never_below_zero() -> None:
    day = Day(SMOKE.with_options(duration_s=40), seed=4, tag="t", start_ms=START_MS)
    produced, _ = play(day)
    worked = contract_on_hand(produced)
    book = day.book.positions
    assert {key: position.on_hand for key, position in book.items() if key in worked} == worked
    assert all(position.on_hand >= 0 for position in book.values())
    assert all(position.in_transit >= 0 and position.damaged >= 0 for position in book.values())


def test_no_sale_or_shipment_beyond_the_stock_in_business_time() -> None:
    """Replayed in occurred_at order, with the counts as of their time, a store never sells what it has
    not got, and a DC never ships or sells (holds aside) beyond its stock."""
    produced, _ = play(Day(SMOKE.with_options(duration_s=40), seed=9, tag="t", start_ms=START_MS))
    seen: set[str] = set()
    timeline: dict[tuple[str, str], list[tuple[int, int, str, int]]] = defaultdict(list)
    for order, produce in enumerate(produced):
        event = produce.event
        if event["event_id"] in seen or event["type"] == "policy":
            continue
        seen.add(event["event_id"])
        at = _ms(event["occurred_at"])
        for line in event["lines"]:
            if event["type"] == "transfer":
                if event["status"] == "shipped":
                    timeline[(event["from_location_id"], line["sku"])].append((at, order, "move", -line["qty"]))
                else:
                    timeline[(event["to_location_id"], line["sku"])].append((at, order, "move", line["qty"]))
            elif event["type"] == "adjustment":
                timeline[(event["location_id"], line["sku"])].append((at, order, "count", line["qty"]))
            elif event["type"] != "return" or line.get("disposition") != "damaged":
                sign = -1 if event["type"] == "sale" else 1
                timeline[(event["location_id"], line["sku"])].append((at, order, "move", sign * line["qty"]))
    for key, entries in timeline.items():
        on_hand = 0
        for _, _, kind, qty in sorted(entries):
            on_hand = qty if kind == "count" else on_hand + qty
            assert on_hand >= 0, (key, entries)


def test_offline_tills_replay_sales_older_than_a_count_that_names_them() -> None:
    produced, _ = play(Day(SMOKE.with_options(offline_share=1.0), seed=3, tag="t", start_ms=START_MS))
    counts = [p for p in produced if p.kind == "count_cycle"]
    late = [(index, p) for index, p in enumerate(produced) if p.kind == "late_sale"]
    assert late
    covered = 0
    for index, sale in late:
        for count in counts:
            position = produced.index(count)
            names = {line["sku"] for line in count.event["lines"]}
            same_store = count.event["location_id"] == sale.event["location_id"]
            if same_store and position < index and _ms(count.event["occurred_at"]) > _ms(sale.event["occurred_at"]) \
                    and names & {line["sku"] for line in sale.event["lines"]}:
                covered += 1
                break
    assert covered  # produced after the count, occurred before it, of SKUs it counted


def test_doorbusters_are_held_beyond_their_stock_only_during_a_flash_sale() -> None:
    profile = SMOKE.with_options(spikes=(Spike(0.5, 0.5, 3.0),), holds_per_s=40)
    day = Day(profile, seed=8, tag="t", start_ms=START_MS)
    _, actions = play(day)
    holds = [action for action in actions if isinstance(action, HoldRequest)]
    flash = [hold for hold in holds if hold.flash]
    assert flash
    wanted = sum(qty for hold in flash for _, qty in hold.lines)
    assert wanted > profile.flash_stock * profile.dcs * 2  # contention: far more asked than there is
    ordinary = [hold for hold in holds if not hold.flash]
    assert all(sku.startswith("SKU-") for hold in ordinary for sku, _ in hold.lines)
    _, calm = play(Day(profile.with_options(spikes=()), seed=8, tag="t", start_ms=START_MS))
    assert not [action for action in calm if isinstance(action, HoldRequest) and action.flash]


def test_ordinary_holds_stay_within_the_stock_believed_free() -> None:
    day = Day(SMOKE.with_options(holds_per_s=60, spikes=()), seed=12, tag="t", start_ms=START_MS)
    play(day)
    for (location, _), position in day.book.positions.items():
        if location in day.dcs:
            assert position.reserved <= position.on_hand - position.safety_stock


def test_a_hold_decided_after_the_close_stays_held_and_its_checkout_never_happens() -> None:
    day = Day(SMOKE, seed=1, tag="t", start_ms=START_MS)
    day.seed()
    day.open_stores()
    day.advance(1.0, 100)
    requests = [r for r in day.holds(20, 1.0) if day.holds_by_id[r.reservation_id].plan != "expire"]
    assert requests
    day.close(2.0)
    for request in requests:  # answers still in flight when the load ended
        day.decided(request.reservation_id, "held", 2.5, 2.5 + request.ttl_seconds)
    day.settle()
    held: Counter[tuple[str, str]] = Counter()
    for request in requests:
        held.update({(request.location_id, sku): qty for sku, qty in request.lines})
    assert {key: day.book.positions[key].reserved for key in held} == dict(held)


def test_the_netting_benchmark_counts_the_days_own_lines_and_postings() -> None:
    from benchmarks import erp

    figures = erp.peak_day("smoke")
    produced, _ = play(Day(SMOKE, seed=1, tag="bench", start_ms=int(erp.PEAK_START.timestamp() * 1000)))
    day_lines = sum(p.lines for p in produced if p.kind in MOVEMENT_KINDS)
    assert figures["raw_lines"] == day_lines  # opening stock and duplicates are not the day's movements
    assert 1 < figures["netting_ratio"] < 3
