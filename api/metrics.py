"""The API's one catalogue of metrics, on a registry of its own per app (no global state)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .keys import METRICS

UNMATCHED = "unmatched"


class Metrics:
    """Every metric the API exports, declared here and nowhere else."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ats_api_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "ats_api_request_duration_seconds", "HTTP request latency by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.cache_errors = Counter(
            "ats_api_cache_errors", "cache (Redis) operations that failed", ["operation"], registry=self.registry)
        self.broker_errors = Counter(
            "ats_api_broker_errors", "produce calls that failed", ["operation"], registry=self.registry)
        self.reservations = Counter(
            "ats_api_reservation_outcomes", "reservation requests by outcome "
            "(held, rejected, released, consumed, expired, timeout, unavailable)",
            ["action", "outcome"], registry=self.registry)
        self.ingested = Counter(
            "ats_api_events_ingested", "events accepted by POST /v1/events and produced, by type",
            ["type"], registry=self.registry)
        self.ingest_rejected = Counter(
            "ats_api_events_rejected", "events refused by POST /v1/events, by reason", ["reason"],
            registry=self.registry)
        self.erp_drift_positions = Gauge(
            "ats_erp_drift_positions", "positions whose engine on_hand differs from the ERP book, at the last "
            "GET /v1/erp/drift", registry=self.registry)
        self.erp_drift_units = Gauge(
            "ats_erp_drift_units", "sum of |engine on_hand - ERP book on_hand| at the last GET /v1/erp/drift",
            registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/v1/availability/{sku}``), never the raw path (bounded labels)."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return UNMATCHED
    return info.route.resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        labels = (route_template(request), request.method, str(status))
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(time.perf_counter() - started)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
