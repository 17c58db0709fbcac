"""The API's request and response models: they validate requests and generate ``/openapi.json``.

Request models are strict like the events (``"5"`` is not a quantity) and refuse unknown fields.
Event bodies are validated by :mod:`availability.validation`, the code the stream processor uses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from availability.events import (
    DEFAULT_TTL_SECONDS,
    MAX_LINES,
    MAX_TTL_SECONDS,
    ChannelName,
    Event,
    Line,
    LocationId,
    ReferenceId,
    Sku,
)

MAX_SKUS = 1_000
MAX_LOCATIONS = 1_000
MAX_EVENTS = 500

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="RFC 3339, UTC")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- requests ------------------------------------------------------------------------------------
MAX_BOOK_POSITIONS = 10_000
BOOK_QTY_LIMIT = 10**12


class BookPosition(_Request):
    """The ERP's booked on_hand of one position."""

    sku: Sku
    location_id: LocationId
    on_hand: Annotated[int, Field(ge=-BOOK_QTY_LIMIT, le=BOOK_QTY_LIMIT)]


class ErpBook(_Request):
    """A snapshot of the ERP's book on-hand (replaces the one posted before)."""

    positions: Annotated[list[BookPosition], Field(min_length=1, max_length=MAX_BOOK_POSITIONS)]


class AvailabilityQuery(_Request):
    """A page of SKUs at once (a product listing page)."""

    skus: Annotated[list[Sku], Field(min_length=1, max_length=MAX_SKUS)]
    locations: Annotated[list[LocationId], Field(min_length=1, max_length=MAX_LOCATIONS)] | None = None
    channel: ChannelName | None = None


class ReservationRequest(_Request):
    """Hold stock at one location, all lines or nothing."""

    reservation_id: ReferenceId
    location_id: LocationId
    lines: Annotated[list[Line], Field(min_length=1, max_length=MAX_LINES)]
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)] = DEFAULT_TTL_SECONDS
    channel: ChannelName | None = None


class EventBatch(_Request):
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_EVENTS)]


# ---- responses -----------------------------------------------------------------------------------
class LocationAnswer(_Response):
    location_id: str
    ats: int = Field(ge=0)
    on_hand: int
    reserved: int
    in_transit: int
    damaged: int
    safety_stock: int
    updated_at: Timestamp


class Answer(_Response):
    sku: str
    network_ats: int = Field(ge=0)
    as_of: Timestamp
    locations: list[LocationAnswer]


class QueryAnswer(_Response):
    items: list[Answer]


class Accepted(_Response):
    accepted: list[str] = Field(description="event ids produced, in request order")


class LineQty(_Response):
    sku: str
    qty: int


class ShortfallOut(_Response):
    sku: str
    requested: int
    available: int


class Decision(_Response):
    """A reservation as the owning worker decided it (and as it is cached)."""

    reservation_id: str
    location_id: str
    status: Literal["held", "rejected", "released", "consumed", "expired"]
    lines: list[LineQty]
    remaining: list[LineQty]
    decided_at: Timestamp
    expires_at: Timestamp | None = None
    shortfalls: list[ShortfallOut] | None = None
    channel: str | None = None


class FieldProblem(_Response):
    field: str
    message: str
    index: int | None = None
    reason: str | None = None


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


class BookStored(_Response):
    positions: int = Field(description="positions in the snapshot now stored")
    posted_at: Timestamp


class DriftRow(_Response):
    sku: str
    location_id: str
    erp_on_hand: int
    engine_on_hand: int
    drift: int = Field(description="engine_on_hand - erp_on_hand")


class DriftReport(_Response):
    posted_at: Timestamp = Field(description="when the book snapshot was posted")
    as_of: Timestamp
    drifting: int = Field(description="positions whose drift is not 0")
    total_abs_drift: int
    positions: list[DriftRow]


class Health(_Response):
    status: Literal["ok"]


class Ready(_Response):
    status: Literal["ready"]
    checks: dict[str, str]


def field_problems(errors: list[Any], *, index: int | None = None) -> list[dict[str, Any]]:
    """Pydantic errors → ``[{"field", "message"[, "index"]}]`` with dotted field paths."""
    out = []
    for error in errors:
        item: dict[str, Any] = {"field": ".".join(str(p) for p in error["loc"]), "message": error["msg"]}
        if index is not None:
            item["index"] = index
        out.append(item)
    return out
