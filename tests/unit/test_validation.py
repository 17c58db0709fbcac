"""Validation of raw event bytes against the contract's "Inputs" section.

Every expectation below is taken from the contract (DESIGN.md) and the reason codes documented in
``availability.validation.REASONS``; none was copied from running the code.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.events import (
    Adjustment,
    Policy,
    Receipt,
    Reservation,
    Return,
    Sale,
    Transfer,
    epoch_ms,
)
from availability.validation import REASONS, EventRejected, Rejection, validate_event

T0 = "2024-01-01T00:00:00Z"
T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch milliseconds
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


def _base(kind: str) -> dict[str, Any]:
    """A minimal valid event of each type."""
    common: dict[str, Any] = {"event_id": f"evt-{kind}", "type": kind, "occurred_at": T0}
    lines = [{"sku": "SKU-1", "qty": 2}]
    extra: dict[str, dict[str, Any]] = {
        "sale": {"location_id": "store-1", "lines": lines},
        "return": {"location_id": "store-1", "lines": lines},
        "receipt": {"location_id": "dc-1", "lines": lines},
        "transfer": {"transfer_id": "t-1", "status": "shipped", "from_location_id": "dc-1",
                     "to_location_id": "store-1", "lines": lines},
        "reservation": {"location_id": "store-1", "reservation_id": "r-1", "action": "hold", "lines": lines},
        "adjustment": {"location_id": "store-1", "mode": "delta", "lines": [{"sku": "SKU-1", "qty": -3}]},
        "policy": {"location_id": "store-1", "lines": [{"sku": "SKU-1", "safety_stock": 4}]},
    }
    return {**common, **copy.deepcopy(extra[kind])}


_DROP = object()


def _dump(data: Any) -> bytes:
    return orjson.dumps(data)


def _with(kind: str, **changes: Any) -> bytes:
    data = _base(kind)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return _dump(data)


def _line(kind: str, index: int = 0, **changes: Any) -> bytes:
    data = _base(kind)
    data["lines"][index].update(changes)
    return _dump(data)


def _rejection(raw: bytes | None, expected_type: str | None = None) -> Rejection:
    with pytest.raises(EventRejected) as info:
        validate_event(raw, expected_type=expected_type)
    rejection = info.value.rejection
    assert rejection.reason in REASONS, rejection
    return rejection


# ---- bad inputs → reason codes ---------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    # (case id, raw bytes, reason)
    ("none", None, "empty_message"),
    ("empty-bytes", b"", "empty_message"),
    ("invalid-json", b'{"event_id": "e1", ', "invalid_json"),
    ("json-garbage-after-object", _dump(_base("sale")) + b" x", "invalid_json"),
    ("not-utf8", b'{"event_id": "\xff\xfe", "type": "sale"}', "invalid_json"),
    ("latin1-encoded", _dump(_base("sale")).replace(b"store-1", "st\u00f6re".encode("latin-1")), "invalid_json"),
    ("json-array", b"[]", "not_an_object"),
    ("json-array-of-event", b"[" + _dump(_base("sale")) + b"]", "not_an_object"),
    ("json-null", b"null", "not_an_object"),
    ("json-string", b'"sale"', "not_an_object"),
    ("json-number", b"42", "not_an_object"),
    ("missing-event-id", _with("sale", event_id=_DROP), "missing_field"),
    ("missing-type", _with("sale", type=_DROP), "missing_field"),
    ("missing-occurred-at", _with("receipt", occurred_at=_DROP), "missing_field"),
    ("missing-location", _with("sale", location_id=_DROP), "missing_field"),
    ("missing-lines", _with("receipt", lines=_DROP), "missing_field"),
    ("missing-transfer-id", _with("transfer", transfer_id=_DROP), "missing_field"),
    ("missing-qty", _dump({**_base("sale"), "lines": [{"sku": "SKU-1"}]}), "missing_field"),
    ("event-id-empty", _with("sale", event_id=""), "invalid_field"),
    ("event-id-129", _with("sale", event_id="e" * 129), "invalid_field"),
    ("event-id-number", _with("sale", event_id=17), "invalid_field"),
    ("unknown-type", _with("sale", type="theft"), "unknown_type"),
    ("occurred-at-no-offset", _with("sale", occurred_at="2024-01-01T00:00:00"), "invalid_field"),
    ("occurred-at-number", _with("sale", occurred_at=1_704_067_200), "invalid_field"),
    ("occurred-at-not-a-date", _with("sale", occurred_at="yesterday"), "invalid_field"),
    ("location-with-space", _with("sale", location_id="store 1"), "invalid_field"),
    ("location-65-chars", _with("sale", location_id="L" * 65), "invalid_field"),
    ("location-empty", _with("sale", location_id=""), "invalid_field"),
    ("location-slash", _with("receipt", location_id="dc/1"), "invalid_field"),
    ("lines-empty", _with("sale", lines=[]), "invalid_field"),
    ("lines-1001", _with("receipt", lines=[{"sku": f"S{i}", "qty": 1} for i in range(1001)]), "invalid_field"),
    ("lines-not-a-list", _with("sale", lines={"sku": "SKU-1", "qty": 1}), "invalid_field"),
    ("line-not-an-object", _with("sale", lines=[5]), "invalid_field"),
    ("qty-0", _line("sale", qty=0), "invalid_field"),
    ("qty-negative", _line("receipt", qty=-1), "invalid_field"),
    ("qty-1.5", _line("sale", qty=1.5), "invalid_field"),
    ("qty-1.0", _line("sale", qty=1.0), "invalid_field"),
    ("qty-string", _line("sale", qty="3"), "invalid_field"),
    ("qty-bool", _line("sale", qty=True), "invalid_field"),
    ("qty-1000001", _line("receipt", qty=1_000_001), "invalid_field"),
    ("qty-huge", _dump(_base("sale")).replace(b'"qty":2', b'"qty":18446744073709551617'), "invalid_field"),
    ("sku-with-space", _line("sale", sku="SKU 1"), "invalid_field"),
    ("sku-with-slash", _line("sale", sku="SKU/1"), "invalid_field"),
    ("sku-non-ascii", _line("sale", sku="SK\u00dc"), "invalid_field"),
    ("sku-trailing-newline", _line("sale", sku="SKU-1\n"), "invalid_field"),
    ("sku-empty", _line("sale", sku=""), "invalid_field"),
    ("sku-65-chars", _line("sale", sku="S" * 65), "invalid_field"),
    ("unknown-field", _with("sale", reservationId="r-1"), "unknown_field"),
    ("unknown-line-field", _line("sale", price=3), "unknown_field"),
    ("qty-on-policy-line", _line("policy", qty=3), "unknown_field"),
    ("transfer-same-location", _with("transfer", to_location_id="dc-1"), "same_location"),
    ("transfer-bad-status", _with("transfer", status="lost"), "invalid_field"),
    ("return-bad-disposition", _line("return", disposition="broken"), "invalid_field"),
    ("hold-without-lines", _with("reservation", lines=_DROP), "missing_lines"),
    ("hold-null-lines", _with("reservation", lines=None), "missing_lines"),
    ("reservation-bad-action", _with("reservation", action="extend"), "invalid_field"),
    ("ttl-604801", _with("reservation", ttl_seconds=604_801), "invalid_field"),
    ("ttl-0", _with("reservation", ttl_seconds=0), "invalid_field"),
    ("missing-reservation-id", _with("reservation", reservation_id=_DROP), "missing_field"),
    ("count-negative", _with("adjustment", mode="count", lines=[{"sku": "A", "qty": -1}]), "negative_count"),
    ("delta-zero", _with("adjustment", lines=[{"sku": "A", "qty": 0}]), "zero_delta"),
    ("adjustment-bad-mode", _with("adjustment", mode="set"), "invalid_field"),
    ("delta-below-minus-million", _with("adjustment", lines=[{"sku": "A", "qty": -1_000_001}]), "invalid_field"),
    ("count-duplicate-sku", _with("adjustment", mode="count",
                                  lines=[{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]), "duplicate_sku"),
    ("policy-duplicate-sku", _with("policy", lines=[{"sku": "A", "safety_stock": 1},
                                                   {"sku": "A", "safety_stock": 2}]), "duplicate_sku"),
    ("hold-duplicate-sku", _with("reservation", lines=[{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]),
     "duplicate_sku"),
    ("policy-negative-safety-stock", _line("policy", safety_stock=-1), "invalid_field"),
    ("message-too-large", _with("sale", source="x" * 1_048_576), "message_too_large"),
]


@pytest.mark.parametrize(("raw", "reason"), [(raw, reason) for _, raw, reason in BAD_INPUTS],
                         ids=[case for case, _, _ in BAD_INPUTS])
def test_bad_input_gets_its_reason(raw: bytes | None, reason: str) -> None:
    assert _rejection(raw).reason == reason


def test_the_bad_inputs_cover_every_validation_reason() -> None:
    covered = {reason for _, _, reason in BAD_INPUTS}
    # Reasons that only the shard (or the router) can give, or that need a topic: not input-shape reasons.
    not_from_shape = {"type_topic_mismatch", "unknown_reservation", "count_outside_horizon", "misrouted",
                      "invalid_routed_record", "invalid_network_record"}
    assert covered == set(REASONS) - not_from_shape


@pytest.mark.parametrize("kind", ["sale", "return", "receipt", "transfer", "reservation", "adjustment", "policy"])
def test_type_must_match_the_topic(kind: str) -> None:
    others = {"sale", "return", "receipt", "transfer", "reservation", "adjustment", "policy"} - {kind}
    for expected in sorted(others):
        rejection = _rejection(_dump(_base(kind)), expected_type=expected)
        assert rejection.reason == "type_topic_mismatch"
        assert [error.field for error in rejection.errors] == ["type"]
    assert validate_event(_dump(_base(kind)), expected_type=kind).type == kind


def test_shape_errors_win_over_the_topic_check() -> None:
    # Invalid events are rejected for what is wrong with them, whatever topic they came on.
    assert _rejection(_line("sale", qty=0), expected_type="receipt").reason == "invalid_field"


# ---- field paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    (_line("sale", qty=0), "lines.0.qty"),
    (_dump({**_base("sale"), "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": "3"}]}), "lines.1.qty"),
    (_dump({**_base("receipt"), "lines": [{"sku": "A", "qty": 1}, {"sku": "B c", "qty": 1}]}), "lines.1.sku"),
    (_line("return", disposition="broken"), "lines.0.disposition"),
    (_line("policy", safety_stock=-1), "lines.0.safety_stock"),
    (_with("sale", event_id=_DROP), "event_id"),
    (_with("sale", location_id="a b"), "location_id"),
    (_with("reservation", ttl_seconds=604_801), "ttl_seconds"),
    (_with("transfer", from_location_id="x" * 65), "from_location_id"),
    (_with("sale", reservationId="r-1"), "reservationId"),
    (_with("sale", type="theft"), "type"),
    (_with("sale", type=_DROP), "type"),
    (_dump({**_base("sale"), "lines": [{"sku": "A"}]}), "lines.0.qty"),
])
def test_rejection_names_the_field_path(raw: bytes, field: str) -> None:
    rejection = _rejection(raw)
    assert field in [error.field for error in rejection.errors]
    assert field in rejection.detail


def test_every_bad_field_is_named() -> None:
    data = _base("sale")
    data["lines"] = [{"sku": "A", "qty": 0}, {"sku": "B", "qty": 1}, {"sku": "bad sku", "qty": 1_000_001}]
    data["location_id"] = "no spaces allowed"
    fields = {error.field for error in _rejection(_dump(data)).errors}
    assert {"lines.0.qty", "lines.2.sku", "lines.2.qty", "location_id"} <= fields
    assert "lines.1.qty" not in fields


@pytest.mark.parametrize(("raw", "path"), [
    (_with("adjustment", mode="count", lines=[{"sku": "A", "qty": 1}, {"sku": "B", "qty": -1}]), "lines.1"),
    (_with("adjustment", lines=[{"sku": "A", "qty": 4}, {"sku": "B", "qty": 0}]), "lines.1"),
    (_with("policy", lines=[{"sku": "A", "safety_stock": 1}, {"sku": "A", "safety_stock": 2}]), "lines.1"),
])
def test_rule_rejections_point_at_the_line(raw: bytes, path: str) -> None:
    assert path in _rejection(raw).detail


def test_rejected_exception_carries_the_detail() -> None:
    with pytest.raises(EventRejected, match=r"lines\.0\.qty"):
        validate_event(_line("sale", qty=0))


# ---- valid events ---------------------------------------------------------------------------------

def test_valid_sale() -> None:
    event = validate_event(_with("sale", channel="web", reservation_id="r-9", source="pos:store-12:register-3"),
                           expected_type="sale")
    assert isinstance(event, Sale)
    assert (event.event_id, event.location_id, event.channel, event.reservation_id) == (
        "evt-sale", "store-1", "web", "r-9")
    assert [(line.sku, line.qty) for line in event.lines] == [("SKU-1", 2)]
    assert event.source == "pos:store-12:register-3"
    assert epoch_ms(event.occurred_at) == T0_MS


def test_sale_optional_fields_default_to_none() -> None:
    event = validate_event(_dump(_base("sale")))
    assert isinstance(event, Sale)
    assert (event.channel, event.reservation_id, event.source) == (None, None, None)


def test_sale_may_repeat_a_sku() -> None:
    # Uniqueness is required only for holds, counts and policies.
    event = validate_event(_with("sale", lines=[{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]))
    assert [line.qty for line in event.lines] == [1, 2]


def test_valid_return_disposition_defaults_to_sellable() -> None:
    event = validate_event(_with("return", lines=[{"sku": "A", "qty": 1},
                                                  {"sku": "B", "qty": 2, "disposition": "damaged"},
                                                  {"sku": "C", "qty": 3, "disposition": "sellable"}]))
    assert isinstance(event, Return)
    assert [line.disposition for line in event.lines] == ["sellable", "damaged", "sellable"]


def test_valid_receipt_with_po() -> None:
    event = validate_event(_with("receipt", po_id="PO-77"), expected_type="receipt")
    assert isinstance(event, Receipt)
    assert event.po_id == "PO-77"
    assert event.location_id == "dc-1"


@pytest.mark.parametrize("status", ["shipped", "received"])
def test_valid_transfer(status: str) -> None:
    event = validate_event(_with("transfer", status=status), expected_type="transfer")
    assert isinstance(event, Transfer)
    assert (event.transfer_id, event.status, event.from_location_id, event.to_location_id) == (
        "t-1", status, "dc-1", "store-1")


def test_transfer_has_no_location_id() -> None:
    assert _rejection(_with("transfer", location_id="dc-1")).reason == "unknown_field"


def test_valid_hold_ttl_defaults_to_900() -> None:
    event = validate_event(_with("reservation", channel="web"), expected_type="reservation")
    assert isinstance(event, Reservation)
    assert (event.action, event.ttl_seconds, event.channel, event.reservation_id) == ("hold", 900, "web", "r-1")
    assert [(line.sku, line.qty) for line in (event.lines or [])] == [("SKU-1", 2)]


@pytest.mark.parametrize("ttl", [1, 604_800])
def test_hold_ttl_bounds_are_inclusive(ttl: int) -> None:
    event = validate_event(_with("reservation", ttl_seconds=ttl))
    assert isinstance(event, Reservation)
    assert event.ttl_seconds == ttl


def test_valid_release_needs_no_lines() -> None:
    event = validate_event(_with("reservation", action="release", lines=_DROP))
    assert isinstance(event, Reservation)
    assert (event.action, event.lines) == ("release", None)


def test_valid_adjustments() -> None:
    delta = validate_event(_with("adjustment", lines=[{"sku": "A", "qty": -3}, {"sku": "B", "qty": 1_000_000},
                                                      {"sku": "C", "qty": -1_000_000}]))
    assert isinstance(delta, Adjustment)
    assert (delta.mode, [line.qty for line in delta.lines]) == ("delta", [-3, 1_000_000, -1_000_000])
    count = validate_event(_with("adjustment", mode="count", lines=[{"sku": "A", "qty": 0}, {"sku": "B", "qty": 7}]))
    assert isinstance(count, Adjustment)
    assert (count.mode, [line.qty for line in count.lines]) == ("count", [0, 7])


def test_valid_policy_allows_zero_safety_stock() -> None:
    event = validate_event(_with("policy", lines=[{"sku": "A", "safety_stock": 0}, {"sku": "B", "safety_stock": 5}]))
    assert isinstance(event, Policy)
    assert [(line.sku, line.safety_stock) for line in event.lines] == [("A", 0), ("B", 5)]


def test_limits_are_inclusive() -> None:
    data = _base("receipt")
    data["event_id"] = "e" * 128
    data["location_id"] = "L" * 64
    data["lines"] = [{"sku": "S" * 63 + str(i % 10), "qty": 1_000_000} for i in range(10)]
    data["lines"] += [{"sku": f"X{i}", "qty": 1} for i in range(990)]
    event = validate_event(_dump(data))
    assert len(event.event_id) == 128
    assert len(event.lines) == 1000


@pytest.mark.parametrize("stamp", ["2024-01-01T05:30:00+05:30", "2023-12-31T19:00:00-05:00",
                                   "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00.000Z"])
def test_occurred_at_offset_is_honoured(stamp: str) -> None:
    assert epoch_ms(validate_event(_with("sale", occurred_at=stamp)).occurred_at) == T0_MS


# ---- properties -----------------------------------------------------------------------------------

ids = st.text(ID_ALPHABET, min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(location=ids, lines=st.lists(st.tuples(ids, st.integers(1, 1_000_000)), min_size=1, max_size=20))
def test_any_contract_valid_receipt_is_accepted(location: str, lines: list[tuple[str, int]]) -> None:
    data = {**_base("receipt"), "location_id": location, "lines": [{"sku": s, "qty": q} for s, q in lines]}
    event = validate_event(_dump(data), expected_type="receipt")
    assert event.location_id == location
    assert [(line.sku, line.qty) for line in event.lines] == lines


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(ID_ALPHABET, max_size=10), bad=st.characters(exclude_characters=ID_ALPHABET,
                                                                    exclude_categories=("Cs",)),
       suffix=st.text(ID_ALPHABET, max_size=10))
def test_a_sku_with_any_other_character_is_refused(prefix: str, bad: str, suffix: str) -> None:
    rejection = _rejection(_line("sale", sku=prefix + bad + suffix))
    assert rejection.reason == "invalid_field"
    assert "lines.0.sku" in [error.field for error in rejection.errors]


@settings(max_examples=200, deadline=None)
@given(qty=st.integers().filter(lambda q: not 1 <= q <= 1_000_000).filter(lambda q: abs(q) < 2**63))
def test_a_qty_out_of_range_is_refused(qty: int) -> None:
    assert _rejection(_line("sale", qty=qty)).reason == "invalid_field"


@settings(max_examples=200, deadline=None)
@given(ms=st.integers(1_230_768_000_000, 2_145_916_800_000), offset_minutes=st.integers(-14 * 60, 14 * 60))
def test_epoch_ms_is_exact_for_millisecond_times_2009_to_2037(ms: int, offset_minutes: int) -> None:
    moment = (EPOCH + timedelta(milliseconds=ms)).astimezone(timezone(timedelta(minutes=offset_minutes)))
    event = validate_event(_with("sale", occurred_at=moment.isoformat()))
    assert epoch_ms(event.occurred_at) == ms


@pytest.mark.parametrize(("stamp", "ms"), [
    ("2004-10-01T06:45:38.741Z", 1_096_613_138_741),
    ("2038-02-23T09:21:35.673Z", 2_150_529_695_673),
    ("1970-01-01T04:37:54.367Z", 16_674_367),
])
def test_epoch_ms_is_exact_for_any_millisecond_time(stamp: str, ms: int) -> None:
    # Worked by hand: e.g. 2038-02-23T09:21:35Z is 2_150_529_695 s after the epoch, plus 673 ms.
    assert epoch_ms(validate_event(_with("sale", occurred_at=stamp)).occurred_at) == ms


# ---- hostile input: limits that keep a message from crashing the worker or the API ------------------

@pytest.mark.parametrize("stamp", ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00",
                                   "9000-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00"])
def test_business_times_the_engine_cannot_place_are_refused(stamp: str) -> None:
    """Year 1 at +14:00 is year 0 in UTC: accepted, it crashed the ERP feed formatting its window."""
    rejection = _rejection(_with("sale", occurred_at=stamp))
    assert rejection.reason == "invalid_field"
    assert [error.field for error in rejection.errors] == ["occurred_at"]


@pytest.mark.parametrize(("field", "value"), [
    ("event_id", "evt-1\nINFO forged log line"), ("event_id", "evt\x00"), ("source", "pos:\r12"),
    ("reservation_id", "r-1\n"), ("event_id", "evt-\x85"),
])
def test_free_text_ids_refuse_control_characters(field: str, value: str) -> None:
    rejection = _rejection(_with("sale", **{field: value}))
    assert rejection.reason == "invalid_field"
    assert [error.field for error in rejection.errors] == [field]
    assert "control characters" in rejection.detail


def test_free_text_keeps_other_characters() -> None:
    event = validate_event(_with("sale", event_id="pos 12 / *{tag}* — ✓", source="pos:store-12 register 3"))
    assert event.event_id == "pos 12 / *{tag}* — ✓"


@pytest.mark.parametrize("raw", [
    b"[" * 100_000,
    b'{"a":' * 5_000,
    _with("sale", source="x").replace(b'"x"', b"[" * 300 + b"]" * 300),
])
def test_deeply_nested_json_is_invalid_json_not_a_crash(raw: bytes) -> None:
    rejection = _rejection(raw)
    assert rejection.reason == "invalid_json"
    assert "recursion limit" in rejection.detail


def test_the_largest_dead_letter_fits_the_producer_request_limit() -> None:
    """A payload just under the message limit, made of characters JSON writes longest, must still give a
    dead letter the producer can send (1,000,000 bytes); otherwise the worker stops on it at every replay."""
    from availability.validation import MAX_MESSAGE_BYTES
    from availability.wire import DEAD_LETTER_PAYLOAD_CHARS, dead_letter

    for payload in ("\x01" * MAX_MESSAGE_BYTES, '"' * MAX_MESSAGE_BYTES, "\\xff" * (MAX_MESSAGE_BYTES // 4)):
        record = dead_letter("invalid_json", "d" * 2000, "inventory.sales", 7, 123, payload)
        assert len(orjson.dumps(record)) < 1_000_000
        assert record["payload_truncated"] is True
        assert record["payload_chars"] == len(payload)
        assert record["payload"] == payload[:DEAD_LETTER_PAYLOAD_CHARS]
    small = dead_letter("invalid_json", "d", "inventory.sales", 0, 1, "{")
    assert small == {"reason": "invalid_json", "detail": "d", "topic": "inventory.sales", "partition": 0,
                     "offset": 1, "payload": "{"}
