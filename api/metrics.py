"""The API's metrics, built from the catalogue in :mod:`availability.metrics`, on a registry of its own per app
(no global state)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from availability import metrics as catalogue

from .keys import METRICS

UNMATCHED = "unmatched"


class Metrics:
    """The API's collectors, built from the one catalogue (:mod:`availability.metrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[Any, Any] = {}  # labelled children, by label values (bounded)
        self.requests = build(catalogue.API_REQUESTS, self.registry)
        self.latency = build(catalogue.API_LATENCY, self.registry)
        self.cache_errors = build(catalogue.API_CACHE_ERRORS, self.registry)
        self.answers = build(catalogue.API_ANSWERS, self.registry)
        self.broker_errors = build(catalogue.API_BROKER_ERRORS, self.registry)
        self.reservations = build(catalogue.API_RESERVATIONS, self.registry)
        self.ingested = build(catalogue.API_INGESTED, self.registry)
        self.ingest_rejected = build(catalogue.API_INGEST_REJECTED, self.registry)
        self.erp_drift_positions = build(catalogue.ERP_DRIFT_POSITIONS, self.registry)
        self.erp_drift_units = build(catalogue.ERP_DRIFT_UNITS, self.registry)
        self.erp_drift_checked = build(catalogue.ERP_DRIFT_CHECKED, self.registry)

    def answered(self, source: str, count: int) -> None:
        """``count`` availability answers from ``source`` (kept, read, direct)."""
        child = self._children.get(source)
        if child is None:
            child = self._children[source] = self.answers.labels(source)
        child.inc(count)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its latency (the labelled children kept per label values: bounded)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def build(metric: catalogue.Metric, registry: CollectorRegistry) -> Any:
    """The prometheus_client collector for one catalogue entry."""
    if metric.kind == "counter":
        return Counter(metric.name, metric.help, metric.labels, registry=registry)
    if metric.kind == "gauge":
        return Gauge(metric.name, metric.help, metric.labels, registry=registry)
    return Histogram(metric.name, metric.help, metric.labels, registry=registry, buckets=metric.buckets)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/v1/availability/{sku}``), never the raw path (bounded labels)."""
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return UNMATCHED
    return info.route.resource.canonical


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
