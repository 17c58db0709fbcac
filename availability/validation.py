"""Validation of raw event bytes: an event, or a :class:`Rejection` with a stable machine reason.

The API turns a rejection into a 422 naming each field, the streams into a dead letter; the rules and
the reason codes live only here (codes are listed in :data:`REASONS`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from .events import AnyEvent, Event

MAX_MESSAGE_BYTES = 1_048_576

#: reason code → what it means. Stable: dashboards and redrive filters key on these.
REASONS: dict[str, str] = {
    "empty_message": "the message has no value (a tombstone or an empty body)",
    "message_too_large": f"the message is over {MAX_MESSAGE_BYTES} bytes",
    "invalid_json": "the message is not UTF-8 JSON",
    "not_an_object": "the message is JSON but not an object",
    "unknown_type": "`type` is not one of the event types",
    "type_topic_mismatch": "`type` does not match the topic the event arrived on",
    "missing_field": "a required field is absent",
    "unknown_field": "a field the contract does not define",
    "invalid_field": "a field has the wrong type, format or range",
    "duplicate_sku": "a SKU appears twice where lines must be unique (holds, counts, policies)",
    "same_location": "a transfer from a location to itself",
    "missing_lines": "a hold without lines",
    "negative_count": "a counted quantity below zero",
    "zero_delta": "an adjustment delta of zero",
    "unknown_reservation": "a release for a reservation this location never held",
    "count_outside_horizon": "a count older than what the position still remembers (ATS_COUNT_HORIZON_SECONDS)",
    "misrouted": "a re-routed leg arrived at a partition that does not own its location",
    # internal topics (only workers write there): listed so that operators can filter them
    "invalid_routed_record": "an ats.routed record (a re-routed leg or a clock tick) this worker cannot read",
    "invalid_network_record": "an ats.network record (positions for a SKU's network sums) this worker cannot read",
}

_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)
_CUSTOM = {"duplicate_sku", "same_location", "missing_lines", "negative_count", "zero_delta"}


class FieldError(NamedTuple):
    field: str
    message: str


class Rejection(NamedTuple):
    """Why an input is refused: a stable ``reason`` code, a human ``detail``, the fields at fault."""

    reason: str
    detail: str
    errors: tuple[FieldError, ...] = ()


class EventRejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def validate_event(raw: bytes | None, *, expected_type: str | None = None) -> AnyEvent:
    """Parse and validate one event; raise :class:`EventRejected` with the reason."""
    if not raw:
        raise EventRejected(Rejection("empty_message", REASONS["empty_message"]))
    if len(raw) > MAX_MESSAGE_BYTES:
        raise EventRejected(Rejection("message_too_large", f"{len(raw)} bytes; at most {MAX_MESSAGE_BYTES}"))
    try:
        event = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise EventRejected(_rejection(exc)) from None
    if expected_type is not None and event.type != expected_type:
        raise EventRejected(Rejection(
            "type_topic_mismatch", f"type {event.type!r} arrived where {expected_type!r} events belong",
            (FieldError("type", f"must be {expected_type!r} on this topic"),)))
    return event


def _rejection(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    fields = tuple(FieldError(_field(error["loc"], error["type"]), error["msg"]) for error in errors)
    first = errors[0]
    kind, loc = first["type"], first["loc"]
    if kind == "json_invalid":
        reason = "invalid_json"
    elif kind in {"model_type", "model_attributes_type", "dict_type"} and len(loc) == 0:
        reason = "not_an_object"
    elif kind == "union_tag_invalid":
        reason = "unknown_type"
    elif kind in {"missing", "union_tag_not_found"}:
        reason = "missing_field"
    elif kind == "extra_forbidden":
        reason = "unknown_field"
    elif kind in _CUSTOM:
        reason = kind
    else:
        reason = "invalid_field"
    detail = "; ".join(f"{f.field}: {f.message}" if f.field else f.message for f in fields)
    return Rejection(reason, detail[:2000], fields)


def _field(loc: tuple[Any, ...], kind: str) -> str:
    # A discriminated union puts the tag first: ("sale", "lines", 0, "qty") → "lines.0.qty".
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return "type"
    parts = list(loc)
    if parts and parts[0] in {"sale", "return", "receipt", "transfer", "reservation", "adjustment", "policy"}:
        parts = parts[1:]
    return ".".join(str(part) for part in parts)
