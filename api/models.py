"""The API's request and response models: they validate requests and generate ``/openapi.json``.

Request models are strict like the events (``"5"`` is not a quantity) and refuse unknown fields.
Event bodies are validated by :mod:`availability.validation`, the code the stream processor uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from availability.deadletters import DEFAULT_PAGE, MAX_PAGE, MAX_REDRIVE, REASONS_LISTED
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
from availability.history import DEFAULT_PAGE as HISTORY_DEFAULT_PAGE
from availability.history import MAX_PAGE as HISTORY_MAX_PAGE
from availability.topics import INPUT_TOPICS

MAX_SKUS = 1_000
MAX_LOCATIONS = 1_000
MAX_EVENTS = 500
MAX_REPEATED = 1_000  # values of one repeated query parameter (the document says so: maxItems)

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


MAX_LOWEST = 200
LowestLimit = Annotated[int, Field(ge=1, le=MAX_LOWEST, description="how many SKUs (default 20)")]


class LowestItem(LocationAnswer):
    """A position of the location (the location's answer fields) and its SKU."""

    sku: str


class LowestAnswer(_Response):
    location_id: str
    as_of: Timestamp
    items: list[LowestItem] = Field(description="lowest on_hand - reserved - safety_stock first (most oversold)")


HistoryLimit = Annotated[int, Field(ge=1, le=HISTORY_MAX_PAGE,
                                   description=f"entries per page (default {HISTORY_DEFAULT_PAGE})")]


class Quantities(_Response):
    on_hand: int
    reserved: int
    in_transit: int
    damaged: int
    safety_stock: int


class CountDetail(_Response):
    implied_delta: int = Field(description="what the count changed on_hand by (posted to the ERP as an adjustment)")
    absorbed: list[str] = Field(description="event ids of late movements (arrived after the count, occurred at or "
                                            "before it) that the count already included: they changed nothing")


class HistoryEntry(_Response):
    entry_id: str = Field(description="the same whenever the same event is applied again")
    event_id: str | None = Field(description="the event that caused it (null for a hold's expiry)")
    type: str = Field(description="the event's type: sale, return, transfer, receipt, reservation, adjustment, policy")
    movement: str = Field(description="sale, return, return_damaged, receipt, transfer_out, transfer_ship_in, "
                                      "transfer_in, adjustment, count, policy, hold, release, hold_consumed, "
                                      "hold_expired")
    occurred_at: Timestamp
    applied_at: Timestamp
    source: str | None = Field(description="the event's source (the system that sent it)")
    effect: Quantities = Field(description="signed change of each quantity")
    result: Quantities = Field(description="the position after it")
    ats: int = Field(ge=0, description="ATS after it")
    reservation_id: str | None = Field(None, description="the hold it took, released, consumed or expired")
    covered_by_count: str | None = Field(None, description="a late movement: the count that already included it")
    count: CountDetail | None = Field(None, description="for a count")


class HistoryPage(_Response):
    sku: str
    location_id: str
    as_of: Timestamp
    items: list[HistoryEntry] = Field(description="newest applied first")
    next_cursor: str | None = Field(description="pass as cursor for older entries; null: none left")
class LocationStatus(_Response):
    """When a location last spoke, and whether it is silent (ATS_SILENT_AFTER_SECONDS, ATS_TRADING_HOURS)."""

    location_id: str
    last_event_at: Timestamp | None = Field(description="the latest business time (occurred_at) of its events; "
                                                        "null: never heard of")
    last_arrival_at: Timestamp | None = Field(description="when its latest event arrived (the record's Kafka "
                                                          "timestamp)")
    quiet_seconds: float | None = Field(description="since last_arrival_at")
    silent: bool = Field(description="trading now, and quiet for longer than the threshold counted in trading "
                                     "hours; never for a location never heard of")
    trading_now: bool


class SilentLocations(_Response):
    as_of: Timestamp
    silent_after_seconds: int
    trading_hours: str
    items: list[LocationStatus] = Field(description="the silent locations, the most recently gone quiet first "
                                                    "(a store that went dark minutes ago before one closed for weeks)")


class WorkerSeen(_Response):
    worker: str
    at: float = Field(description="when it published these totals (epoch seconds)")
    partitions: list[int]
    rss_bytes: int | None = Field(None, description="its resident memory then (absent from older workers)")
    error_logs: int | None = Field(None, description="records it has logged at ERROR or above since it started")


class Lag(_Response):
    total: int
    partitions: dict[str, int] = Field(description="records behind, per topic/partition")


class FreshnessBuckets(_Response):
    le: list[float] = Field(description="upper bounds (seconds); counts has one more entry, above the last")
    counts: list[int] = Field(description="events per bucket (not cumulative) since the workers started")
    sum: float


class ErpStatus(_Response):
    drift_positions: int
    drift_units: int
    checked_at: Timestamp | None = Field(description="when drift was last computed; null: no book yet")


class OpsSummary(_Response):
    """Totals since each live worker started, summed over workers: rates are differences of two reads."""

    as_of: Timestamp
    workers: list[WorkerSeen]
    events: dict[str, dict[str, int]] = Field(description="event type → result (applied, dead_letter) → events")
    dead_letters: dict[str, int] = Field(description="reason → records")
    holds: dict[str, int] = Field(description="decision status → decisions")
    postings: dict[str, int] = Field(description="movement type → ERP postings")
    positions: dict[str, int] = Field(description="negative_on_hand and reserved_above_on_hand position counts")
    lag: Lag
    cache_write_errors: int
    freshness: FreshnessBuckets
    lateness: FreshnessBuckets = Field(description="input events by arrival minus business time (seconds): a till "
                                                   "that was offline shows as a burst in the upper buckets")
    erp: ErpStatus


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


# ---- dead letters --------------------------------------------------------------------------------
DeadLetterId = Annotated[str, Field(pattern=r"^[0-9]{1,6}:[0-9]{1,19}$", examples=["3:17"],
                                    description="<partition>:<offset> of the record in inventory.dead-letter")]
if TYPE_CHECKING:
    DeadLetterReason = str
    InputTopic = str
else:  # enums in the document, built from the one list of reasons and of topics
    DeadLetterReason = Literal[REASONS_LISTED]
    InputTopic = Literal[tuple(INPUT_TOPICS)]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"records per page (default {DEFAULT_PAGE})")]
Since = Annotated[str, Field(min_length=1, max_length=64,
                             description="RFC 3339 with an offset, or a duration back from now: 90s, 15m, 6h, 7d")]
Cursor = Annotated[str, Field(min_length=1, max_length=4096, description="next_cursor of the previous page")]


class DeadLetterRange(_Request):
    """Dead letters ``from_offset`` to ``to_offset`` (both included) of one dead-letter partition."""

    partition: Annotated[int, Field(ge=0, le=999_999)]
    from_offset: Annotated[int, Field(ge=0, le=2**63 - 1)]
    to_offset: Annotated[int, Field(ge=0, le=2**63 - 1)]


class RedriveRequest(_Request):
    """Which dead letters to re-submit: ``ids``, or a ``range`` and/or filters (``reason``, ``topic``,
    ``since``), newest first up to ``limit`` (``cursor`` continues a selection that had more)."""

    ids: Annotated[list[DeadLetterId], Field(min_length=1, max_length=MAX_REDRIVE)] | None = None
    range: DeadLetterRange | None = None
    reason: list[DeadLetterReason] | None = Field(default=None, min_length=1, max_length=len(REASONS_LISTED))
    topic: InputTopic | None = None
    since: Since | None = None
    cursor: Cursor | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_REDRIVE)] = MAX_REDRIVE
    correction: dict[str, Any] | None = Field(
        default=None, description="the corrected event, for exactly one id; validated like POST /v1/events")
    dry_run: bool = Field(default=False, description="validate and report; produce nothing")


class DeadLetterItem(_Response):
    id: DeadLetterId
    dead_lettered_at: Timestamp
    reason: str
    detail: str
    topic: str | None = Field(description="where the original record was read")
    partition: int | None
    offset: int | None
    payload: str | None = Field(description="the original message as text (at most 2,000 characters here)")
    payload_truncated: bool


class DeadLetterPage(_Response):
    items: list[DeadLetterItem] = Field(description="newest first (by when the worker refused the record)")
    next_cursor: str | None = Field(description="pass as cursor for older records; null: none left")
    scanned: int = Field(description="records read to build this page (at most 20,000 per request)")


class RedriveRejection(_Response):
    reason: str
    detail: str
    errors: list[dict[str, str]]


class RedriveItem(_Response):
    id: str
    reason: str | None = Field(description="why the worker refused it")
    topic: str | None
    partition: int | None
    offset: int | None
    corrected: bool
    status: Literal["accepted", "rejected", "not_found"]
    produced: bool = Field(description="produced to produced_to (false in a dry run)")
    event_id: str | None = None
    produced_to: str | None = None
    rejection: RedriveRejection | None = None


class RedriveReport(_Response):
    dry_run: bool
    summary: dict[str, int] = Field(description="accepted, rejected and not_found counts")
    items: list[RedriveItem] = Field(description="in the order re-submitted (oldest dead letter first)")
    next_cursor: str | None = Field(description="more records matched: pass as cursor to redrive them")
