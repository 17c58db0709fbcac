"""Event builders for tests: valid events by default, any field overridable."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

_counter = itertools.count()


def ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def lines(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": qty} for sku, qty in pairs]


def event(kind: str, *, at: str = "2026-11-24T10:00:00Z", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": ref(kind), "type": kind, "occurred_at": at}
    body.update(fields)
    return body


def sale(location: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("sale", location_id=location, lines=lines(*pairs), **fields)


def receipt(location: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("receipt", location_id=location, lines=lines(*pairs), **fields)


def return_(location: str, *pairs: tuple[str, int], disposition: str = "sellable", **fields: Any) -> dict[str, Any]:
    return event("return", location_id=location,
                 lines=[{"sku": s, "qty": q, "disposition": disposition} for s, q in pairs], **fields)


def transfer(origin: str, destination: str, status: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("transfer", transfer_id=fields.pop("transfer_id", ref("T")), status=status,
                 from_location_id=origin, to_location_id=destination, lines=lines(*pairs), **fields)


def count(location: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("adjustment", location_id=location, mode="count", lines=lines(*pairs), **fields)


def delta(location: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("adjustment", location_id=location, mode="delta", lines=lines(*pairs), **fields)


def policy(location: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("policy", location_id=location,
                 lines=[{"sku": s, "safety_stock": q} for s, q in pairs], **fields)


def hold(location: str, reservation_id: str, *pairs: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return event("reservation", location_id=location, reservation_id=reservation_id, action="hold",
                 lines=lines(*pairs), **fields)


def release(location: str, reservation_id: str, **fields: Any) -> dict[str, Any]:
    return event("reservation", location_id=location, reservation_id=reservation_id, action="release", **fields)
