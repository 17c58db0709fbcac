"""State records as JSON text: what a flush writes must be exactly the JSON of the wire shapes, whether a
bucket's positions were encoded just now or kept from an earlier flush, and a bucket written as records
of changes must restore as the full record would."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.model import Position
from availability.netting import Netting
from availability.shard import PartitionState
from availability.wire import bucket_json, bucket_of, cache_field, cache_value, position_to_wire, positions_json

from .test_netting import netted_shard, restore_netted
from .test_shard import NOW, drained, receipt, run, sale, steps, table_after

ints = st.integers(-(2**53), 2**53)
texts = st.text(max_size=20)
positions = st.builds(Position, ints, ints, ints, ints, ints, ints, st.none() | ints, texts, st.none() | ints,
                      st.lists(st.tuples(ints, ints), max_size=5).map(tuple))


@given(kept=st.dictionaries(texts, positions, max_size=4))
def test_positions_are_the_json_of_their_wire_form(kept: dict[str, Position]) -> None:
    assert orjson.loads(positions_json(kept)) == {sku: position_to_wire(position) for sku, position in kept.items()}


@given(position=positions)
def test_a_cache_field_is_the_json_of_its_cache_value(position: Position) -> None:
    assert cache_field(position) == orjson.dumps(cache_value(position))


@given(adds=st.lists(st.tuples(st.sampled_from(["A", "B\u00e9", 'C"']), st.sampled_from(["sale", "receipt"]),
                               st.sampled_from([0, 20_000, 40_000]), st.integers(-5, 5)), max_size=12),
       close_at=st.sampled_from([None, 20_000, 60_000]))
def test_netting_json_is_its_wire_form_after_any_changes(adds: list[tuple[str, str, int, int]],
                                                         close_at: int | None) -> None:
    netting = Netting()
    for index, (sku, kind, start, qty) in enumerate(adds):
        netting.add(sku, kind, start, qty)
        if index == len(adds) // 2:
            netting.to_json()  # a full record in between
            if close_at is not None:
                netting.close("S1", close_at, 20_000)
    assert orjson.loads(netting.to_json()) == orjson.loads(orjson.dumps(netting.to_wire()))


def test_a_bucket_record_has_every_part() -> None:
    record = bucket_json(2, {0: 3, 7: 1}, '{"A":[1,0,0,0,0,5,null,"",null,[]]}', {"R1": ["held", [], 5]}, '{"n":[]}')
    assert orjson.loads(record) == {"v": 2, "w": {"0": 3, "7": 1}, "p": {"A": [1, 0, 0, 0, 0, 5, None, "", None, []]},
                                    "d": {"R1": ["held", [], 5]}, "n": {"n": []}}


def _buckets(state: PartitionState) -> dict[Any, Any]:
    """Each bucket as what it means: pending netting entries are a mapping (their order in the record
    follows how they were written, and closes written as changes move entries)."""
    return {address: (bucket.watermarks, bucket.positions,
                      {**bucket.netting.to_wire(), "n": sorted(bucket.netting.to_wire()["n"])})
            for address, bucket in state.buckets.items()}


@settings(max_examples=150, deadline=None)
@given(history=steps(max_size=20), cuts=st.lists(st.integers(0, 20), max_size=4))
def test_buckets_written_as_changes_restore_as_one_full_flush(history: list[Any], cuts: list[int]) -> None:
    """Flush after each cut (kept JSON; records of changes where they are smaller), run the rest, flush
    again: the changelog restores every bucket as a state that ran the whole history and flushed once."""
    kept, fresh = netted_shard(), netted_shard()
    flushes, done = [], 0
    for cut in [*sorted(cuts), len(history)]:
        run(kept, history[done:cut])
        done = max(done, cut)
        flush = kept.state.drain(NOW)
        flushes.append([*flush.records, flush.marker] if flush else [])
    run(fresh, history)
    once = fresh.state.drain(NOW)
    restored = restore_netted(table_after(*flushes))
    assert _buckets(restored) == _buckets(restore_netted([*once.records, once.marker] if once else []))


#: ten SKUs of the same bucket (3) of a location
SAME_BUCKET = sorted(sku for sku in (f"SKU-{i}" for i in range(400)) if bucket_of(sku) == 3)[:10]


def _bucket_records(records: list[tuple[str, Any]]) -> list[tuple[str, int, list[str]]]:
    """(key, version, SKUs) of the bucket records and records of changes among ``records``."""
    return [(key, value["v"], sorted(value["p"])) for key, value in ((key, orjson.loads(text)) for key, text in records
                                                                  if key.startswith(("b|", "c|")))]


def test_a_flush_writes_a_chain_of_changes_of_a_big_bucket_that_restores_in_any_order() -> None:
    same_bucket = SAME_BUCKET
    shard = netted_shard()
    shard.send(receipt("S1", *((sku, 5) for sku in same_bucket)))
    first = drained(shard.state)
    assert _bucket_records(first) == [("b|0|S1|3", 0, same_bucket)]
    shard.send(sale("S1", (same_bucket[0], 2)))
    second = drained(shard.state)
    assert _bucket_records(second) == [("c|0|S1|3", 0, same_bucket[:1])]
    shard.send(sale("S1", (same_bucket[1], 1), (same_bucket[2], 1)))
    third = drained(shard.state)  # only what changed since the record before
    assert _bucket_records(third) == [("c|0|S1|3|1", 0, same_bucket[1:3])]
    table = table_after(first, second, third)
    for records in (table, table[::-1], sorted(table, key=lambda record: record[0][::-1])):
        restored = restore_netted(records)
        assert [restored.position("S1", sku).on_hand for sku in same_bucket[:4]] == [3, 4, 4, 5]
    # Once the chain would hold as many entries (positions, netting entries) as the bucket, the full record
    # is written again, one version up; the chain starts over in slot 0, and the older version's slot 1 is
    # not restored on top of it.
    flushes = [first, second, third]
    for turn in range(3, 40):
        shard.send(sale("S1", (same_bucket[turn % len(same_bucket)], 1)))
        flushes.append(drained(shard.state))
        if _bucket_records(flushes[-1])[0][0].startswith("b|"):
            break
    assert _bucket_records(flushes[-1]) == [("b|0|S1|3", 1, same_bucket)]
    shard.send(sale("S1", (same_bucket[0], 1)))
    flushes.append(drained(shard.state))
    assert _bucket_records(flushes[-1]) == [("c|0|S1|3", 1, same_bucket[:1])]
    table = table_after(*flushes)
    assert orjson.loads(dict(table)["c|0|S1|3|1"])["v"] == 0
    for records in (table, table[::-1]):
        restored = restore_netted(records)
        assert [restored.position("S1", sku) for sku in same_bucket] == [
            shard.state.position("S1", sku) for sku in same_bucket]
        assert restored.buckets[("S1", 3)].chain == 1


def test_a_record_of_changes_written_before_the_chain_loads_as_its_first_slot() -> None:
    """Before the chain a bucket had one record of changes, in slot 0's key, holding every change since the
    full record: it restores as a chain of one, and the restored bucket goes on in slot 1."""
    same_bucket = SAME_BUCKET
    shard = netted_shard()
    shard.send(receipt("S1", *((sku, 5) for sku in same_bucket)))
    full = drained(shard.state)
    shard.send(sale("S1", (same_bucket[0], 2)))
    first = dict(drained(shard.state))
    shard.send(sale("S1", (same_bucket[1], 1)))
    second = dict(drained(shard.state))
    cumulative = orjson.loads(first["c|0|S1|3"])
    later = orjson.loads(second["c|0|S1|3|1"])
    cumulative["p"].update(later["p"])
    cumulative["n"]["n"] += later["n"]["n"]
    cumulative["w"] = later["w"]
    restored = restore_netted([*table_after(full), ("c|0|S1|3", orjson.dumps(cumulative).decode())])
    assert [restored.position("S1", sku) for sku in same_bucket] == [shard.state.position("S1", sku)
                                                                     for sku in same_bucket]
    assert _buckets(restored) == _buckets(shard.state)
    going_on = netted_shard()
    going_on.state, going_on.offsets = restored, dict(shard.offsets)
    going_on.send(sale("S1", (same_bucket[2], 1)))
    assert _bucket_records(drained(restored)) == [("c|0|S1|3|1", 0, same_bucket[2:3])]
