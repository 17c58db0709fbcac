"""The internal topic's records: what a worker writes reads back; anything else says what is wrong."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from availability import topics
from availability.routing import Leg
from streams.routing import RoutedLeg, Router, Tick, read_routed


def test_a_leg_reads_back_as_written() -> None:
    _, value = Router.leg_message(Leg("S1", "to"), topics.TRANSFERS, 3, 17, b'{"event_id": "e"}')
    assert read_routed(value) == RoutedLeg("to", "S1", topics.TRANSFERS, 3, 17, b'{"event_id": "e"}')


def test_a_tick_reads_back() -> None:
    assert read_routed(orjson.dumps({"kind": "tick", "now_ms": 5})) == Tick(5)


@pytest.mark.parametrize(("value", "says"), [
    (b"", "not JSON"), (b"[1]", "not a JSON object"), (b'{"kind": "x"}', "kind must be"),
    (b'{"kind": "tick", "now_ms": true}', "now_ms must be an integer"),
    (b'{"kind": "leg", "leg": "sideways", "topic": "inventory.sales"}', "leg must be one of"),
    (b'{"kind": "leg", "leg": "all", "topic": "elsewhere"}', "not an input topic"),
    (b'{"kind": "leg", "leg": "all", "topic": "inventory.sales", "location_id": "S", "partition": "0"}',
     "partition must be an integer"),
])
def test_anything_else_says_what_is_wrong(value: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read_routed(value)


SCALARS = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8)
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(["kind", "leg", "topic", "now_ms"]), inner, max_size=4),
                       max_leaves=12)


@given(st.binary(max_size=200) | JSONISH.map(orjson.dumps))
def test_never_anything_but_a_record_or_a_value_error(value: bytes) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(read_routed(value), Tick | RoutedLeg)
