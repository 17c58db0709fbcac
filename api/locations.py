"""Silent stores at the API: ``GET /v1/locations/{location_id}/status`` and ``GET /v1/locations/silent``.

Both read the hash the workers keep of when each location last spoke (``ats:v1:locations``, see
:mod:`streams.silence`) and apply the rule of :mod:`availability.silence` at the API's clock, with the
API's ``ATS_SILENT_AFTER_SECONDS`` and ``ATS_TRADING_HOURS`` (set them alike for the workers and the API).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from availability import silence, topics
from availability.events import LocationId
from availability.silence import Heard
from availability.wire import rfc3339

from .answers import _check
from .keys import CACHE, CLOCK, METRICS, SETTINGS
from .problems import unavailable

_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)


async def status(request: web.Request) -> web.Response:
    """``GET /v1/locations/{location_id}/status``: an unknown location is 200, never heard of, not silent."""
    location_id = _check(_LOCATION, request.match_info["location_id"], "location_id")
    try:
        raw = await request.app[CACHE].hget(topics.LOCATIONS_KEY, location_id)
    except (RedisError, OSError, TimeoutError):
        request.app[METRICS].cache_errors.labels("read").inc()
        raise unavailable("the cache") from None
    heard = silence.decode(raw) if raw is not None else None
    return _json(_status(request, location_id, heard, _now_ms(request)))


async def silent(request: web.Request) -> web.Response:
    """``GET /v1/locations/silent``: every silent location, the most recently gone quiet first (what the
    console shows): a store that went dark minutes ago is the incident, one quiet for weeks is likely closed."""
    try:
        stored = await request.app[CACHE].hgetall(topics.LOCATIONS_KEY)
    except (RedisError, OSError, TimeoutError):
        request.app[METRICS].cache_errors.labels("read").inc()
        raise unavailable("the cache") from None
    now_ms = _now_ms(request)
    items = []
    for raw_location, raw in stored.items():
        heard = silence.decode(raw)
        if heard is not None:
            location_id = raw_location.decode() if isinstance(raw_location, bytes) else raw_location
            item = _status(request, location_id, heard, now_ms)
            if item["silent"]:
                items.append(item)
    items.sort(key=lambda item: (item["quiet_seconds"], item["location_id"]))
    settings = request.app[SETTINGS]
    return _json({"as_of": rfc3339(now_ms), "silent_after_seconds": settings.silent_after_seconds,
                  "trading_hours": settings.trading_hours, "items": items})


def _status(request: web.Request, location_id: str, heard: Heard | None, now_ms: int) -> dict[str, Any]:
    settings = request.app[SETTINGS]
    result = silence.status(heard, now_ms, silent_after_s=settings.silent_after_seconds,
                            hours=settings.calendar.hours(location_id))
    return {"location_id": location_id,
            "last_event_at": rfc3339(heard.business_ms) if heard is not None else None,
            "last_arrival_at": rfc3339(heard.arrival_ms) if heard is not None else None,
            "quiet_seconds": result.quiet_ms / 1000 if result.quiet_ms is not None else None,
            "silent": result.silent, "trading_now": result.trading_now}


def _now_ms(request: web.Request) -> int:
    return int(request.app[CLOCK]() * 1000)


def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, dumps=lambda value: orjson.dumps(value).decode())
