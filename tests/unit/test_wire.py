"""State records as JSON text: what a flush writes must be exactly the JSON of the wire shapes, whether a
bucket's positions were encoded just now or kept from an earlier flush."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.model import Position
from availability.netting import Netting
from availability.wire import bucket_json, position_entry_json, position_to_wire

from .test_netting import netted_shard
from .test_shard import NOW, run, steps

ints = st.integers(-(2**53), 2**53)
texts = st.text(max_size=20)
positions = st.builds(Position, ints, ints, ints, ints, ints, ints, st.none() | ints, texts, st.none() | ints,
                      st.lists(st.tuples(ints, ints), max_size=5).map(tuple))


@given(sku=texts, position=positions)
def test_a_position_entry_is_the_json_of_its_wire_form(sku: str, position: Position) -> None:
    assert orjson.loads("{" + position_entry_json(sku, position) + "}") == {sku: position_to_wire(position)}


@given(adds=st.lists(st.tuples(st.sampled_from(["A", "B\u00e9", 'C"']), st.sampled_from(["sale", "receipt"]),
                               st.sampled_from([0, 20_000, 40_000]), st.integers(-5, 5)), max_size=12),
       close_at=st.sampled_from([None, 20_000, 60_000]))
def test_netting_json_is_its_wire_form_after_any_changes(adds: list[tuple[str, str, int, int]],
                                                         close_at: int | None) -> None:
    netting = Netting()
    for index, (sku, kind, start, qty) in enumerate(adds):
        netting.add(sku, kind, start, qty)
        if index == len(adds) // 2:
            netting.to_json()  # keep the entries encoded so far
            if close_at is not None:
                netting.close("S1", close_at, 20_000)
    assert orjson.loads(netting.to_json()) == orjson.loads(orjson.dumps(netting.to_wire()))


def test_a_bucket_record_has_every_part() -> None:
    record = bucket_json({0: 3, 7: 1}, ['"A":[1,0,0,0,0,5,null,"",null,[]]'], {"R1": ["held", [], 5]}, '{"n":[]}')
    assert orjson.loads(record) == {"w": {"0": 3, "7": 1}, "p": {"A": [1, 0, 0, 0, 0, 5, None, "", None, []]},
                                    "d": {"R1": ["held", [], 5]}, "n": {"n": []}}


def _bucket_records(records: list[tuple[str, Any]]) -> dict[str, Any]:
    return {key: orjson.loads(value) for key, value in records if key.startswith("b|")}


@settings(max_examples=150, deadline=None)
@given(history=steps(max_size=20), split=st.integers(0, 20))
def test_a_bucket_written_from_kept_json_equals_one_encoded_afresh(history: list[Any], split: int) -> None:
    """Flush after ``split`` steps (keeping each position's JSON), run the rest, flush again: every bucket
    record of the second flush equals the record of a state that ran the whole history and flushed once."""
    kept, fresh = netted_shard(), netted_shard()
    run(kept, history[:split])
    kept.state.drain(NOW)
    run(kept, history[split:])
    run(fresh, history)
    second, whole = kept.state.drain(NOW + 1), fresh.state.drain(NOW + 1)
    records = _bucket_records(second.records if second else [])
    expected = _bucket_records(whole.records if whole else [])
    for key, value in records.items():
        value.pop("d", None)  # decisions travel with the flush that took them
        expected[key].pop("d", None)
        assert value == expected[key]
