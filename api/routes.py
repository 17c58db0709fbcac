"""The one routes table: every route with its handler, the scope it needs, and what it takes and
answers (the OpenAPI document is generated from this table and the models it names)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from availability.events import ChannelName, Event, LocationId, ReferenceId, Sku

from . import answers, deadletters, erp, health, history, ingest, locations, openapi, ops, reservations
from .keys import ROUTE_SPECS
from .metrics import metrics_handler
from .models import (
    Accepted,
    Answer,
    AvailabilityQuery,
    BookStored,
    Cursor,
    DeadLetterId,
    DeadLetterItem,
    DeadLetterPage,
    DeadLetterReason,
    Decision,
    DriftReport,
    ErpBook,
    EventBatch,
    Health,
    HistoryLimit,
    HistoryPage,
    InputTopic,
    LocationStatus,
    LowestAnswer,
    LowestLimit,
    OpsSummary,
    PageLimit,
    QueryAnswer,
    Ready,
    RedriveReport,
    RedriveRequest,
    ReservationRequest,
    SilentLocations,
    Since,
)
from .problems import Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READ = "availability:read"
RESERVE = "reservations:write"
INGEST = "events:write"
ADMIN = "admin"


@dataclass(frozen=True)
class Param:
    name: str
    schema: Any
    where: str = "query"
    repeated: bool = False
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: str | None
    summary: str
    body: Any = None
    #: status → (schema type or None, description); problem statuses use the problem schema
    responses: dict[int, tuple[Any, str]] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    #: not part of the described API (the docs page itself, the spec itself)
    hidden: bool = False


_READ_ERRORS = {422: (None, "invalid SKU, location or unknown channel"),
                503: (None, "the availability cache does not answer; retry after Retry-After")}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/availability/{sku}", answers.one, READ, "One SKU's availability (PDP check)",
          responses={200: (Answer, "the answer; an unknown SKU has no locations and network_ats 0"),
                     **_READ_ERRORS},
          params=(Param("sku", Sku, "path"),
                  Param("location", LocationId, repeated=True, description="limit to these locations"),
                  Param("channel", ChannelName, description="a channel of ATS_CHANNELS_FILE"))),
    Route("POST", "/v1/availability/query", answers.query, READ, "Up to 1,000 SKUs at once (PLP check)",
          body=AvailabilityQuery,
          responses={200: (QueryAnswer, "one answer per SKU, in request order"), **_READ_ERRORS}),
    Route("POST", "/v1/events", ingest.ingest, INGEST, "Ingest one event or {events: [...]} (at most 500)",
          body=Event | EventBatch,
          responses={202: (Accepted, "every event validated and produced"),
                     422: (None, "invalid events, each bad field named with its index; nothing produced"),
                     503: (None, "the broker does not answer; retry (events are deduplicated by event_id)")}),
    Route("POST", "/v1/reservations", reservations.create, RESERVE, "Hold stock (all lines or nothing)",
          body=ReservationRequest,
          responses={201: (Decision, "held"), 409: (Decision, "rejected, with shortfalls"),
                     422: (None, "invalid request"),
                     503: (None, "the broker or cache does not answer"),
                     504: (None, "no decision within ATS_HOLD_TIMEOUT_MS; GET the reservation later")}),
    Route("GET", "/v1/reservations/{reservation_id}", reservations.status, RESERVE, "A reservation's status",
          responses={200: (Decision, "the latest decision"), 404: (None, "unknown reservation"),
                     422: (None, "invalid id"), 503: (None, "the cache does not answer")},
          params=(Param("reservation_id", ReferenceId, "path"),)),
    Route("DELETE", "/v1/reservations/{reservation_id}", reservations.release, RESERVE,
          "Release what is left of a hold",
          responses={200: (Decision, "the final decision (released, or how it ended before)"),
                     404: (None, "unknown reservation"), 422: (None, "invalid id"),
                     503: (None, "the broker or cache does not answer"),
                     504: (None, "no decision within ATS_HOLD_TIMEOUT_MS")},
          params=(Param("reservation_id", ReferenceId, "path"),)),
    Route("PUT", "/v1/erp/book", erp.put_book, ADMIN, "Post the ERP's book on-hand (replaces the last snapshot)",
          body=ErpBook,
          responses={200: (BookStored, "stored"), 422: (None, "invalid positions, or one listed twice"),
                     503: (None, "the cache does not answer")}),
    Route("GET", "/v1/erp/drift", erp.get_drift, ADMIN, "Drift of the posted ERP book against the engine",
          responses={200: (DriftReport, "drift per position (engine on_hand - booked on_hand)"),
                     404: (None, "no ERP book posted yet"), 503: (None, "the cache does not answer")}),
    Route("GET", "/v1/locations/{location_id}/lowest", ops.lowest, READ,
          "The location's SKUs with the lowest ATS (most oversold first)",
          responses={200: (LowestAnswer, "positions, lowest first; an unknown location has none"),
                     422: (None, "invalid location or limit"),
                     503: (None, "the availability cache does not answer")},
          params=(Param("location_id", LocationId, "path"), Param("limit", LowestLimit))),
    Route("GET", "/v1/positions/{sku}/{location_id}/history", history.position_history, READ,
          "Why a number is what it is: the position's latest movements, newest first",
          responses={200: (HistoryPage, "a page; an unknown position has none"),
                     422: (None, "invalid SKU, location, limit or cursor"),
                     503: (None, "the availability cache does not answer")},
          params=(Param("sku", Sku, "path"), Param("location_id", LocationId, "path"),
                  Param("limit", HistoryLimit), Param("cursor", Cursor))),
    Route("GET", "/v1/locations/{location_id}/status", locations.status, READ,
          "When the location last spoke, and whether it is silent (quiet too long in its trading hours)",
          responses={200: (LocationStatus, "its status; an unknown location has null times and is not silent"),
                     422: (None, "invalid location"), 503: (None, "the cache does not answer")},
          params=(Param("location_id", LocationId, "path"),)),
    Route("GET", "/v1/locations/silent", locations.silent, READ,
          "Every silent location, the most recently gone quiet first (the console's silent stores)",
          responses={200: (SilentLocations, "the silent locations (empty when none is)"),
                     503: (None, "the cache does not answer")}),
    Route("GET", "/v1/ops/summary", ops.summary, ADMIN,
          "Operations totals for the console: events, dead letters, holds, postings, lag, freshness",
          responses={200: (OpsSummary, "summed over the workers that published in the last 30 s"),
                     503: (None, "the cache does not answer")}),
    # POST /v1/deadletters/redrive before GET /v1/deadletters/{id}: "redrive" is no dead-letter id
    Route("POST", "/v1/deadletters/redrive", deadletters.redrive, ADMIN,
          "Re-submit dead letters (by ids, a range or filters), optionally one with a corrected payload",
          body=RedriveRequest,
          responses={200: (RedriveReport, "per record: accepted (and produced unless dry_run), rejected again "
                                          "(with the reason), or not found"),
                     422: (None, "no selection, a correction for other than one id, a bad filter or cursor"),
                     503: (None, "the broker does not answer; a retry applies nothing twice (event ids)")}),
    Route("GET", "/v1/deadletters", deadletters.list_dead_letters, ADMIN,
          "Dead letters, newest first, filtered and paged",
          responses={200: (DeadLetterPage, "a page; next_cursor continues with older records"),
                     422: (None, "an unknown reason or topic, a bad since, limit or cursor"),
                     503: (None, "the broker does not answer")},
          params=(Param("reason", DeadLetterReason, repeated=True, description="only these reasons"),
                  Param("topic", InputTopic, description="only records that arrived on this topic"),
                  Param("since", Since, description="only records dead-lettered at or after this"),
                  Param("limit", PageLimit), Param("cursor", Cursor))),
    Route("GET", "/v1/deadletters/{id}", deadletters.show_dead_letter, ADMIN,
          "One dead letter with its whole payload",
          responses={200: (DeadLetterItem, "the record"), 404: (None, "no such record (or expired)"),
                     422: (None, "not a dead-letter id"), 503: (None, "the broker does not answer")},
          params=(Param("id", DeadLetterId, "path"),)),
    Route("GET", "/healthz", health.healthz, None, "Liveness", responses={200: (Health, "alive")}),
    Route("GET", "/readyz", health.readyz, None, "Readiness: cache, broker and worker heartbeat",
          responses={200: (Ready, "ready"), 503: (None, "not ready; checks say why")}),
    Route("GET", "/metrics", metrics_handler, None, "Prometheus metrics",
          responses={200: (str, "text exposition format")}),
    Route("GET", "/openapi.json", openapi.spec_handler, None, "This document", hidden=True),
    Route("GET", "/docs", openapi.docs_handler, None, "Human documentation", hidden=True),
    Route("GET", "/console", ops.console, None, "Live operations console (the page; its data needs tokens)",
          hidden=True),
)


def install(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    """Register every route and remember its table entry (the middleware's auth and query checks read it)."""
    app[ROUTE_SPECS] = {app.router.add_route(route.method, route.path, route.handler): route for route in routes}


def check_query(request: web.Request, route: Route) -> None:
    """Unknown or repeated query parameters are a 422, like unknown body fields: a misspelt
    ``locations=`` must not silently widen an answer to every location."""
    allowed = {p.name: p.repeated for p in route.params if p.where == "query"}
    errors = [{"field": name, "message": "unknown query parameter"}
              for name in dict.fromkeys(request.query) if name not in allowed]
    errors += [{"field": name, "message": "given more than once"} for name, repeated in allowed.items()
               if not repeated and len(request.query.getall(name, ())) > 1]
    if errors:
        raise Problem(422, "; ".join(f"{e['field']!r}: {e['message']}" for e in errors), errors=errors)
