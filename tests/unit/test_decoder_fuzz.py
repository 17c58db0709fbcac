"""Fuzzing the stream decoder (:func:`availability.validation.validate_event`) with hypothesis.

Whatever bytes arrive on an input topic, the decoder either returns an event or raises
:class:`EventRejected` with a documented reason: anything else would crash the worker on every replay of
that message. An event it accepts must keep the contract's invariants, and must go through the domain
(apply, drain, the wire formats of the cache, the ERP feed and the answers) without an error.
Three sources of input: arbitrary bytes, arbitrary JSON, and valid events with one or more mutations.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from availability import topics, wire
from availability.events import MAX_LINES, MAX_QTY, MAX_TTL_SECONDS, AnyEvent, epoch_ms
from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.validation import REASONS, EventRejected, validate_event

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NOW = 1_764_000_000_000  # 2025-11-24T16:00:00Z
DAY = 86_400_000

VALID: dict[str, dict[str, Any]] = {
    "sale": {"location_id": "S-1", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}],
             "channel": "pos", "reservation_id": "R-1"},
    "return": {"location_id": "S-1", "lines": [{"sku": "A", "qty": 1, "disposition": "damaged"}]},
    "receipt": {"location_id": "DC-1", "lines": [{"sku": "A", "qty": 48}], "po_id": "PO-1"},
    "transfer": {"transfer_id": "T-1", "status": "shipped", "from_location_id": "DC-1", "to_location_id": "S-1",
                 "lines": [{"sku": "A", "qty": 12}]},
    "reservation": {"location_id": "S-1", "reservation_id": "R-1", "action": "hold", "ttl_seconds": 600,
                    "lines": [{"sku": "A", "qty": 1}]},
    "adjustment": {"location_id": "S-1", "mode": "count", "lines": [{"sku": "A", "qty": 7}]},
    "policy": {"location_id": "S-1", "lines": [{"sku": "A", "safety_stock": 2}]},
}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
# Values hostile in the ways that matter here: edges of every range, odd characters, odd times.
edge_values = st.sampled_from([
    0, -1, 1, MAX_QTY, MAX_QTY + 1, -MAX_QTY, -MAX_QTY - 1, 2**63, -(2**63) - 1, 1.0, 1.5, True, "1", "", " ",
    "A" * 64, "A" * 65, "e" * 128, "e" * 129, "x\n", "x\x00", "*", "{tag}", "ü", "a:b", None, [], {},
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z", "8999-12-31T23:59:59Z",
    "2026-11-24T10:00:00", "2026-02-30T10:00:00Z", "2026-11-24T10:00:00+24:00", 1_790_000_000,
]) | json_values


offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# hypothesis takes naive bounds and adds the offsets itself
times = (st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)  # noqa: DTZ001
         .map(lambda moment: moment.isoformat()))
quantities = st.integers(-(2**64), 2**64) | st.sampled_from([0, 1, -1, MAX_QTY, MAX_QTY + 1, -MAX_QTY, 604_800])
ids = st.text(st.sampled_from("Az09._:-*{} \n\x00ü"), max_size=70)
#: what a mutation writes into a field of that name, besides anything at all
BY_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "occurred_at": times, "qty": quantities, "safety_stock": quantities, "ttl_seconds": quantities,
    "sku": ids, "location_id": ids, "from_location_id": ids, "to_location_id": ids, "event_id": ids,
    "reservation_id": ids, "source": ids,
    "type": st.sampled_from(sorted(VALID)), "mode": st.sampled_from(["delta", "count"]),
    "action": st.sampled_from(["hold", "release"]), "status": st.sampled_from(["shipped", "received"]),
}


def _value_for(key: Any) -> st.SearchStrategy[Any]:
    return BY_FIELD[key] | edge_values if key in BY_FIELD else edge_values


def _dumps(value: Any) -> bytes:
    """The standard library writes what orjson refuses to (integers past 64 bits), as producers may."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (keys of objects, indexes of arrays)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(VALID)))
    data: dict[str, Any] = {"event_id": "E-1", "type": kind, "occurred_at": "2025-11-24T10:00:00+01:00",
                            "source": "pos:store-1", **copy.deepcopy(VALID[kind])}
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # mostly one change: most reach the domain
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "add", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(_value_for(path[-1]))
        elif action == "drop":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            key = draw(st.sampled_from(["extra", "qty", "sku", "lines", "type", "mode", "action", "ttl_seconds"]))
            parent[key] = draw(_value_for(key))
        elif action == "duplicate" and isinstance(parent, list):
            parent.extend(copy.deepcopy(parent[path[-1]]) for _ in range(draw(st.sampled_from([1, MAX_LINES]))))
    topic_type = draw(st.sampled_from(sorted(VALID))) if draw(st.integers(0, 9)) == 0 else kind
    return topic_type, _dumps(data)


def decode(raw: bytes, expected_type: str | None = None) -> AnyEvent | None:
    """The decoder's only outcomes: an event, or a rejection with a documented reason."""
    try:
        return validate_event(raw, expected_type=expected_type)
    except EventRejected as exc:
        rejection = exc.rejection
    assert rejection.reason in REASONS
    assert rejection.detail
    return None


def assert_invariants(event: AnyEvent) -> None:
    """The contract's rules (DESIGN.md, Inputs), checked on what the decoder let through."""
    assert 1 <= len(event.event_id) <= 128
    assert not CONTROL.search(event.event_id + (event.source or ""))
    assert event.occurred_at.tzinfo is not None
    assert datetime(1970, 1, 1, tzinfo=UTC) <= event.occurred_at < datetime(9000, 1, 1, tzinfo=UTC)
    places = [event.from_location_id, event.to_location_id] if event.type == "transfer" else [event.location_id]
    assert all(ID.fullmatch(place) for place in places)
    if event.type == "transfer":
        assert event.from_location_id != event.to_location_id
    lines = event.lines or []
    assert len(lines) <= MAX_LINES
    assert event.type == "reservation" or len(lines) >= 1
    for line in lines:
        assert ID.fullmatch(line.sku)
        amount = getattr(line, "safety_stock", None)
        qty = amount if amount is not None else line.qty  # type: ignore[union-attr]
        assert type(qty) is int
        if event.type == "policy":
            assert 0 <= qty <= MAX_QTY
        elif event.type == "adjustment":
            assert (qty >= 0) if event.mode == "count" else (qty != 0 and abs(qty) <= MAX_QTY)
            assert abs(qty) <= MAX_QTY
        else:
            assert 1 <= qty <= MAX_QTY
    if event.type == "reservation":
        assert 1 <= event.ttl_seconds <= MAX_TTL_SECONDS
        assert event.action == "release" or lines
        assert event.action == "release" or len({line.sku for line in lines}) == len(lines)


def assert_the_domain_takes_it(event: AnyEvent) -> None:
    """Apply every leg, drain, close every window, and format everything the engine would write."""
    state = PartitionState(0, horizon_ms=DAY, dedupe_window_ms=7 * DAY)
    code = topics.TOPIC_CODE[topics.TOPIC_FOR_TYPE[event.type]]
    for leg in legs(event):
        state.apply(event, leg, Source(code, 1), NOW)
    late = max(NOW, epoch_ms(event.occurred_at)) + 2 * DAY
    state.tick(late, Source(topics.TOPIC_CODE[topics.ROUTED], 2))
    for moment in (NOW, late):
        flush = state.drain(moment)
        if flush is None:
            continue
        for sku, location, position in flush.cache:
            value = wire.cache_value(position)
            answer = wire.answer_location(location, value)
            assert answer["ats"] >= 0
            assert topics.position_key(sku)
        for hold in flush.decisions:
            wire.decision(hold)
            assert topics.reservation_key(hold.reservation_id)
        for posting in flush.postings:
            orjson.dumps(wire.posting_record(posting))
        orjson.dumps([value for _, value in flush.records], default=str)


@FUZZ
@given(raw=st.binary(max_size=2_000))
def test_arbitrary_bytes_are_an_event_or_a_rejection(raw: bytes) -> None:
    decode(raw)


@FUZZ
@given(value=json_values, expected=st.none() | st.sampled_from(sorted(VALID)))
def test_arbitrary_json_is_an_event_or_a_rejection(value: Any, expected: str | None) -> None:
    event = decode(_dumps(value), expected)
    if event is not None:
        assert_invariants(event)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_events())
def test_mutated_events_are_refused_or_keep_every_invariant(case: tuple[str, bytes]) -> None:
    expected_type, raw = case
    event = decode(raw, expected_type)
    if event is not None:
        assert event.type == expected_type
        assert_invariants(event)
        assert_the_domain_takes_it(event)


@FUZZ
@given(case=mutated_events(), cut=st.integers(0, 400), junk=st.binary(max_size=8))
def test_truncated_and_spliced_events_are_refused_cleanly(case: tuple[str, bytes], cut: int, junk: bytes) -> None:
    _, raw = case
    decode(raw[:cut] + junk + raw[cut:])
