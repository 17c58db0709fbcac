"""Ownership and legs: a location belongs to the partition Kafka's default partitioner gives its id."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.routing import ALL, DESTINATION, ORIGIN, Leg, legs, line_ops, murmur2, owner_partition
from availability.validation import validate_event

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
location_ids = st.text(ID_ALPHABET, min_size=1, max_size=64)


def _kafka_partition(key: bytes, partitions: int) -> int:
    all_partitions = list(range(partitions))
    return DefaultPartitioner()(key, all_partitions, all_partitions)


def _event(**fields: Any) -> Any:
    base = {"event_id": "e-1", "occurred_at": "2024-01-01T00:00:00Z"}
    return validate_event(orjson.dumps({**base, **fields}))


# ---- murmur2 and ownership ------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    # Reference values of Kafka's Utils.murmur2 (the Java client's test vectors).
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_kafka_reference_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_murmur2_is_a_signed_32_bit_int() -> None:
    assert murmur2(b"") & 0xFFFFFFFF == kafka_murmur2(b"")
    for data in (b"", b"a", b"ab", b"abc", b"abcd", b"abcde"):
        assert -(2**31) <= murmur2(data) < 2**31


@settings(max_examples=300, deadline=None)
@given(location=location_ids, partitions=st.integers(1, 64))
def test_owner_partition_agrees_with_aiokafka(location: str, partitions: int) -> None:
    assert owner_partition(location, partitions) == _kafka_partition(location.encode(), partitions)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80))
def test_murmur2_agrees_with_aiokafka_on_any_bytes(data: bytes) -> None:
    # aiokafka returns the hash as an unsigned 32-bit value; ours is Java's signed int.
    assert murmur2(data) & 0xFFFFFFFF == kafka_murmur2(data) & 0xFFFFFFFF


@settings(max_examples=200, deadline=None)
@given(location=location_ids, partitions=st.integers(1, 64))
def test_owner_is_a_partition(location: str, partitions: int) -> None:
    assert 0 <= owner_partition(location, partitions) < partitions


def test_one_partition_owns_everything() -> None:
    assert {owner_partition(f"store-{i}", 1) for i in range(100)} == {0}


def test_locations_spread_over_partitions() -> None:
    owners = [owner_partition(f"store-{i}", 8) for i in range(800)]
    assert set(owners) == set(range(8))
    assert max(owners.count(p) for p in range(8)) < 200  # 100 expected each; 2x slack


# ---- legs -----------------------------------------------------------------------------------------

def _transfer(status: str) -> Any:
    return _event(type="transfer", transfer_id="t-1", status=status, from_location_id="dc-1",
                  to_location_id="store-9", lines=[{"sku": "A", "qty": 3}, {"sku": "B", "qty": 1}])


def test_shipped_transfer_has_an_origin_and_a_destination_leg() -> None:
    assert legs(_transfer("shipped")) == (Leg("dc-1", ORIGIN), Leg("store-9", DESTINATION))
    assert (ORIGIN, DESTINATION) == ("from", "to")


def test_received_transfer_is_only_the_destination_leg() -> None:
    assert legs(_transfer("received")) == (Leg("store-9", DESTINATION),)


@pytest.mark.parametrize("fields", [
    {"type": "sale", "lines": [{"sku": "A", "qty": 1}]},
    {"type": "return", "lines": [{"sku": "A", "qty": 1}]},
    {"type": "receipt", "lines": [{"sku": "A", "qty": 1}]},
    {"type": "reservation", "reservation_id": "r", "action": "release"},
    {"type": "adjustment", "mode": "delta", "lines": [{"sku": "A", "qty": 1}]},
    {"type": "policy", "lines": [{"sku": "A", "safety_stock": 1}]},
])
def test_other_events_are_one_leg_at_their_location(fields: dict[str, Any]) -> None:
    assert legs(_event(location_id="store-3", **fields)) == (Leg("store-3", ALL),)


def test_dedupe_keys_separate_the_legs_of_one_event() -> None:
    origin, destination = legs(_transfer("shipped"))
    assert origin.dedupe_key("e-1") != destination.dedupe_key("e-1")
    assert Leg("store-3", ALL).dedupe_key("e-1") == "e-1"
    received = legs(_transfer("received"))[0]
    # The same event id seen on both transfer topics' legs stays one key per leg.
    assert received.dedupe_key("e-1") == destination.dedupe_key("e-1")


# ---- line operations ------------------------------------------------------------------------------

def test_line_ops_of_a_shipped_transfer() -> None:
    shipped = _transfer("shipped")
    assert line_ops(shipped, ORIGIN) == [("A", "transfer_out", 3), ("B", "transfer_out", 1)]
    assert line_ops(shipped, DESTINATION) == [("A", "transfer_ship_in", 3), ("B", "transfer_ship_in", 1)]


def test_line_ops_of_a_received_transfer() -> None:
    assert line_ops(_transfer("received"), DESTINATION) == [("A", "transfer_in", 3), ("B", "transfer_in", 1)]


def test_line_ops_of_each_type() -> None:
    loc = {"location_id": "s"}
    assert line_ops(_event(type="sale", lines=[{"sku": "A", "qty": 2}], **loc), ALL) == [("A", "sale", 2)]
    assert line_ops(_event(type="receipt", lines=[{"sku": "A", "qty": 2}], **loc), ALL) == [("A", "receipt", 2)]
    returned = _event(type="return", lines=[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1, "disposition": "damaged"}],
                      **loc)
    assert line_ops(returned, ALL) == [("A", "return", 2), ("B", "return_damaged", 1)]
    delta = _event(type="adjustment", mode="delta", lines=[{"sku": "A", "qty": -2}], **loc)
    assert line_ops(delta, ALL) == [("A", "adjustment", -2)]
    count = _event(type="adjustment", mode="count", lines=[{"sku": "A", "qty": 0}], **loc)
    assert line_ops(count, ALL) == [("A", "count", 0)]
    policy = _event(type="policy", lines=[{"sku": "A", "safety_stock": 5}], **loc)
    assert line_ops(policy, ALL) == [("A", "policy", 5)]
    hold = _event(type="reservation", reservation_id="r", action="hold", lines=[{"sku": "A", "qty": 1}], **loc)
    assert line_ops(hold, ALL) == []
