"""Every event type end to end: produced to its topic on a real broker, read back from the real cache.

Expected values are the contract's arithmetic worked by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from availability import topics
from tests.builders import (
    count,
    delta,
    event,
    hold,
    policy,
    receipt,
    ref,
    release,
    return_,
    sale,
    transfer,
)

from .cluster import Cluster, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# on_hand, reserved, in_transit, damaged, safety_stock (the cache value without updated_at)


async def state(engine: Cluster, sku: str, location: str) -> list[int] | None:
    value = await engine.position(sku, location)
    return value[:5] if value else None


async def settle(engine: Cluster, sku: str, location: str, expected: list[int]) -> None:
    async def check() -> bool:
        return await state(engine, sku, location) == expected

    try:
        await eventually(check, timeout=30, what=f"{sku}@{location} == {expected}")
    except AssertionError:
        raise AssertionError(f"{sku}@{location}: {await state(engine, sku, location)} != {expected}") from None


async def test_movements_of_every_kind(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 10), po_id="PO-1"))
    await settle(engine, sku, store, [10, 0, 0, 0, 0])
    await engine.send(topics.SALES, sale(store, (sku, 3), channel="pos"))
    await settle(engine, sku, store, [7, 0, 0, 0, 0])
    await engine.send(topics.RETURNS, return_(store, (sku, 2)))
    await settle(engine, sku, store, [9, 0, 0, 0, 0])
    await engine.send(topics.RETURNS, return_(store, (sku, 1), disposition="damaged"))
    await settle(engine, sku, store, [9, 0, 0, 1, 0])
    await engine.send(topics.ADJUSTMENTS, delta(store, (sku, -4)))
    await settle(engine, sku, store, [5, 0, 0, 1, 0])
    await engine.send(topics.POLICIES, policy(store, (sku, 2)))
    await settle(engine, sku, store, [5, 0, 0, 1, 2])


async def test_a_sale_below_zero_is_recorded_and_ats_stays_at_zero(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.SALES, sale(store, (sku, 2)))
    await settle(engine, sku, store, [-2, 0, 0, 0, 0])


async def test_wrongly_keyed_events_are_applied_by_the_owner(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    for index in range(6):  # six keys land on several partitions, most of them not the owner's
        await engine.send(topics.RECEIPTS, receipt(store, (sku, 1)), key=f"wrong-{index}")
    await settle(engine, sku, store, [6, 0, 0, 0, 0])


async def test_a_redelivered_event_applies_once(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    once = receipt(store, (sku, 5))
    await engine.send(topics.RECEIPTS, once)
    await engine.send(topics.RECEIPTS, once)
    await engine.send(topics.RECEIPTS, once, key="another-key")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 1)))  # a later, different event
    await settle(engine, sku, store, [6, 0, 0, 0, 0])


async def test_transfer_shipped_then_received_across_partitions(engine: Cluster,
                                                                two_partitions_apart: tuple[str, str]) -> None:
    dc, store = two_partitions_apart
    sku = ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(dc, (sku, 20)))
    await settle(engine, sku, dc, [20, 0, 0, 0, 0])
    shipped = transfer(dc, store, "shipped", (sku, 8), transfer_id="T-1")
    await engine.send(topics.TRANSFERS, shipped)
    await settle(engine, sku, dc, [12, 0, 0, 0, 0])
    await settle(engine, sku, store, [0, 0, 8, 0, 0])
    await engine.send(topics.TRANSFERS, shipped, key=store)  # redelivered under another key: no effect
    await engine.send(topics.TRANSFERS, transfer(dc, store, "received", (sku, 8), transfer_id="T-1"), key=store)
    await settle(engine, sku, store, [8, 0, 0, 0, 0])
    await settle(engine, sku, dc, [12, 0, 0, 0, 0])


async def test_late_sales_behind_a_count(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 10), at="2026-11-24T08:00:00Z"))
    await engine.send(topics.SALES, sale(store, (sku, 1), at="2026-11-24T11:00:00Z"))
    await settle(engine, sku, store, [9, 0, 0, 0, 0])
    await engine.send(topics.ADJUSTMENTS, count(store, (sku, 6), at="2026-11-24T10:00:00Z"))
    # as of 10:00 there were 6; the 11:00 sale stays applied on top
    await settle(engine, sku, store, [5, 0, 0, 0, 0])
    # an offline till replays a 09:30 sale: the count already covers it
    await engine.send(topics.SALES, sale(store, (sku, 2), at="2026-11-24T09:30:00Z"))
    # an older count changes nothing; a newer movement still applies
    await engine.send(topics.ADJUSTMENTS, count(store, (sku, 100), at="2026-11-24T09:00:00Z"))
    await engine.send(topics.SALES, sale(store, (sku, 1), at="2026-11-24T12:00:00Z"))
    await settle(engine, sku, store, [4, 0, 0, 0, 0])


async def test_holds_are_all_or_nothing_within_ats(engine: Cluster) -> None:
    store, a, b = ref("S"), ref("SKU"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (a, 5), (b, 1)))
    await engine.send(topics.POLICIES, policy(store, (a, 1)))
    await settle(engine, a, store, [5, 0, 0, 0, 1])
    await settle(engine, b, store, [1, 0, 0, 0, 0])
    short = ref("R")
    await engine.send(topics.RESERVATIONS, hold(store, short, (a, 2), (b, 2)))
    rejected = await eventually(lambda: engine.decision(short), what="decision")
    assert rejected["status"] == "rejected"
    assert rejected["shortfalls"] == [{"sku": b, "requested": 2, "available": 1}]
    await settle(engine, a, store, [5, 0, 0, 0, 1])  # nothing taken from the line that fitted
    held = ref("R")
    await engine.send(topics.RESERVATIONS, hold(store, held, (a, 4), ttl_seconds=600))
    accepted = await eventually(lambda: engine.decision(held), what="decision")
    assert accepted["status"] == "held"
    assert "expires_at" in accepted
    await settle(engine, a, store, [5, 4, 0, 0, 1])  # ATS 0 now
    over = ref("R")
    await engine.send(topics.RESERVATIONS, hold(store, over, (a, 1)))
    assert (await eventually(lambda: engine.decision(over), what="decision"))["status"] == "rejected"
    await engine.send(topics.RESERVATIONS, hold(store, held, (a, 4)))  # retried id: original outcome
    await engine.send(topics.RESERVATIONS, release(store, held))
    await settle(engine, a, store, [5, 0, 0, 0, 1])
    assert (await engine.decision(held) or {})["status"] == "released"


async def test_a_sale_consumes_its_hold_once(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 10)))
    await settle(engine, sku, store, [10, 0, 0, 0, 0])
    reservation = ref("R")
    await engine.send(topics.RESERVATIONS, hold(store, reservation, (sku, 3)))
    await settle(engine, sku, store, [10, 3, 0, 0, 0])
    paid = sale(store, (sku, 3), reservation_id=reservation, channel="ecom")
    await engine.send(topics.SALES, paid)
    await engine.send(topics.SALES, paid)
    await settle(engine, sku, store, [7, 0, 0, 0, 0])
    assert (await engine.decision(reservation) or {})["status"] == "consumed"
    await engine.send(topics.RESERVATIONS, release(store, reservation))  # nothing left to free
    await engine.send(topics.SALES, sale(store, (sku, 1)))
    await settle(engine, sku, store, [6, 0, 0, 0, 0])


async def test_an_unreleased_hold_expires(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 4)))
    await settle(engine, sku, store, [4, 0, 0, 0, 0])  # topics are not ordered with each other
    reservation = ref("R")
    await engine.send(topics.RESERVATIONS, hold(store, reservation, (sku, 4), ttl_seconds=2))
    assert (await eventually(lambda: engine.decision(reservation), what="decision"))["status"] == "held"
    await settle(engine, sku, store, [4, 0, 0, 0, 0])
    assert (await engine.decision(reservation) or {})["status"] == "expired"




def _bad_inputs(store: str, sku: str) -> list[tuple[str, str, bytes | dict[str, object] | None]]:
    good = sale(store, (sku, 1))
    long_id = "x" * 129
    return [
        ("invalid_json", topics.SALES, b"{not json"),
        ("invalid_json", topics.SALES, b"\xff\xfe\x00garbage"),
        ("not_an_object", topics.SALES, b"[1, 2, 3]"),
        ("empty_message", topics.SALES, b""),
        ("missing_field", topics.SALES, {k: v for k, v in good.items() if k != "event_id"}),
        ("invalid_field", topics.SALES, {**good, "event_id": long_id}),
        ("unknown_type", topics.SALES, {**good, "type": "theft"}),
        ("type_topic_mismatch", topics.SALES, receipt(store, (sku, 1))),
        ("invalid_field", topics.SALES, {**good, "occurred_at": "2026-11-24T10:00:00"}),
        ("invalid_field", topics.SALES, {**good, "occurred_at": 1_790_000_000}),
        ("invalid_field", topics.SALES, {**good, "location_id": "store 12"}),
        ("invalid_field", topics.SALES, {**good, "lines": []}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": sku, "qty": 1}] * 1001}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": sku, "qty": 0}]}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": sku, "qty": 1.5}]}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": sku, "qty": "3"}]}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": sku, "qty": 1_000_001}]}),
        ("invalid_field", topics.SALES, {**good, "lines": [{"sku": "bad/sku", "qty": 1}]}),
        ("unknown_field", topics.SALES, {**good, "reservationId": "R-1"}),
        ("same_location", topics.TRANSFERS, transfer(store, store, "shipped", (sku, 1))),
        ("invalid_field", topics.TRANSFERS, {**transfer(store, "DC-1", "shipped", (sku, 1)), "status": "lost"}),
        ("missing_lines", topics.RESERVATIONS, {**hold(store, "R-x", (sku, 1)), "lines": None}),
        ("invalid_field", topics.RESERVATIONS, hold(store, "R-y", (sku, 1), ttl_seconds=604_801)),
        ("duplicate_sku", topics.RESERVATIONS, hold(store, "R-z", (sku, 1), (sku, 2))),
        ("negative_count", topics.ADJUSTMENTS, count(store, (sku, -1))),
        ("zero_delta", topics.ADJUSTMENTS, delta(store, (sku, 0))),
        ("invalid_field", topics.ADJUSTMENTS, {**delta(store, (sku, 1)), "mode": "guess"}),
        ("invalid_field", topics.POLICIES, policy(store, (sku, -1))),
        ("unknown_reservation", topics.RESERVATIONS, release(store, ref("never-held"))),
        ("not_an_object", topics.SALES, b"null"),
        # hostile: nesting past the parser's limit, a time that is year 0 in UTC, a newline in an id,
        # and 900 kB of quotes (escaped, the dead letter would be over the producer's request limit)
        ("invalid_json", topics.SALES, b'{"source":' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
        ("invalid_field", topics.SALES, {**good, "occurred_at": "0001-01-01T00:00:00+14:00"}),
        ("invalid_field", topics.SALES, {**good, "event_id": "e-1\nINFO forged"}),
        ("invalid_json", topics.SALES, b'"' * 900_000),
    ]


async def test_bad_input_is_dead_lettered_and_changes_nothing(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 7)))
    await settle(engine, sku, store, [7, 0, 0, 0, 0])
    cases = _bad_inputs(store, sku)
    expected = {}
    for reason, topic, payload in cases:
        expected[await engine.send(topic, payload, key=store)] = reason
    await engine.send(topics.SALES, sale(store, (sku, 1)))  # processing continues after all of them
    await settle(engine, sku, store, [6, 0, 0, 0, 0])

    def provenance(record: dict[str, Any]) -> tuple[str, int, int]:
        return record["topic"], record["partition"], record["offset"]

    letters = await engine.dead_letters(lambda r: provenance(r) in expected, expect=len(cases), timeout=30)
    assert {provenance(letter): letter["reason"] for letter in letters} == expected
    for letter in letters:
        fields = {"reason", "detail", "topic", "partition", "offset", "payload"}
        if len(letter["payload"]) > 100_000:  # the 900 kB one: cut, and saying so
            fields |= {"payload_truncated", "payload_chars"}
            assert letter["payload_chars"] == 900_000
        assert set(letter) == fields
        assert letter["detail"]
        assert isinstance(letter["offset"], int)


async def test_unknown_event_type_on_a_topic_never_stops_processing(engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await engine.send(topics.SALES, event("sale", location_id=store, lines=[{"sku": sku, "qty": 1}], extra=1))
    await engine.send(topics.SALES, sale(store, (sku, 2)))
    await settle(engine, sku, store, [-2, 0, 0, 0, 0])
