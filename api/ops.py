"""What the console (``/console``) reads: the workers' running totals and a location's lowest-ATS SKUs.

``GET /v1/ops/summary`` (admin) sums the snapshots every live worker publishes to the cache
(:mod:`availability.opstats`); rates are the difference of two reads. ``GET /v1/locations/{location_id}/lowest``
(availability:read) reads the location's index, a sorted set the workers write in the same pipeline as the
positions (score: on_hand - reserved - safety_stock, so the most oversold come first), then those
positions and the cache epoch of the location's partition, in one more round trip: a cache that lost the
location's positions is a 503 until its worker has re-written them, never an empty list.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter

from availability import topics
from availability.events import LocationId
from availability.opstats import merge
from availability.routing import owner_partition
from availability.wire import answer_location, rfc3339
from cacheclient import CacheErrors

from .answers import CacheRebuilding, _check, read_positions, unreadable
from .keys import CACHE, CLOCK, DRIFT, METRICS, SETTINGS
from .models import MAX_LOWEST
from .problems import bounded_int, unavailable

_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)
DEFAULT_LOWEST = 20


async def summary(request: web.Request) -> web.Response:
    """``GET /v1/ops/summary``: event, dead-letter, hold and posting totals, lag, freshness buckets."""
    cache, metrics = request.app[CACHE], request.app[METRICS]
    try:
        keys = [key async for key in cache.scan_iter(match=topics.WORKER_STATS_PREFIX + "*", count=100)]
        pipe = cache.pipeline(transaction=False)  # not MGET: on a Redis Cluster the keys span slots
        for key in keys:
            pipe.get(key)
        values = await pipe.execute() if keys else []
    except CacheErrors:
        metrics.cache_errors.labels("read").inc()
        raise unavailable("the cache") from None
    body = merge(orjson.loads(value) for value in values if value)
    now = request.app[CLOCK]()
    body["as_of"] = rfc3339(int(now * 1000))
    drift = request.app[DRIFT]
    body["erp"] = {"drift_positions": drift.positions, "drift_units": drift.units,
                   "checked_at": rfc3339(int(drift.checked * 1000)) if drift.checked else None}
    return web.json_response(body, dumps=_dumps)


async def lowest(request: web.Request) -> web.Response:
    """``GET /v1/locations/{location_id}/lowest?limit=N``: the location's positions with the lowest ATS."""
    location_id = _check(_LOCATION, request.match_info["location_id"], "location_id")
    limit = bounded_int(request.query.get("limit"), "limit", default=DEFAULT_LOWEST, maximum=MAX_LOWEST)
    cache = request.app[CACHE]
    owner = owner_partition(location_id, request.app[SETTINGS].partitions)
    try:
        ranked = await cache.zrange(topics.location_index_key(location_id), 0, limit - 1)
        skus = [bytes(sku).decode() for sku in ranked]  # type: ignore[arg-type]  # members, no scores asked
        found = await read_positions(cache, skus, [location_id], owners=[owner])
    except (*CacheErrors, CacheRebuilding) as exc:
        raise unreadable(request, exc) from None
    items = [{"sku": sku, **answer_location(location_id, value)}
             for sku, positions in zip(skus, found, strict=True) for _, value in positions]
    as_of = rfc3339(int(request.app[CLOCK]() * 1000))
    return web.json_response({"location_id": location_id, "as_of": as_of, "items": items}, dumps=_dumps)


async def console(request: web.Request) -> web.Response:
    """``GET /console``: one static page (HTML, CSS and vanilla JS inline; no build step, no CDN)."""
    page = resources.files("api").joinpath("console.html").read_bytes()
    return web.Response(body=page, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP})


_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
