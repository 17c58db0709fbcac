"""``GET /v1/positions/{sku}/{location_id}/history``: why a number is what it is.

The workers keep each position's history entries in the cache (a list per position, newest first,
written in the same pipeline as the numbers they explain: :mod:`streams.engine`); this handler reads the
list in one round trip and shows it through :mod:`availability.history` (copies dropped, the horizon
applied, counts given the late movements they absorbed), one page at a time.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import TypeAdapter

from availability import history, topics
from availability.events import LocationId, Sku
from availability.routing import owner_partition
from availability.wire import rfc3339
from cacheclient import CacheErrors

from .answers import _check
from .keys import CACHE, CLOCK, METRICS, SETTINGS
from .problems import Problem, bounded_int, unavailable

_SKU: TypeAdapter[str] = TypeAdapter(Sku)
_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)


async def position_history(request: web.Request) -> web.Response:
    """Newest first, ``limit`` per page (default 50, at most 500), ``cursor`` from the previous page.
    An unknown position has an empty history (200)."""
    sku = _check(_SKU, request.match_info["sku"], "sku")
    location_id = _check(_LOCATION, request.match_info["location_id"], "location_id")
    limit = bounded_int(request.query.get("limit"), "limit", default=history.DEFAULT_PAGE, maximum=history.MAX_PAGE)
    cursor = request.query.get("cursor")
    try:
        partition = owner_partition(location_id, request.app[SETTINGS].partitions)
        raw = await request.app[CACHE].lrange(topics.history_key(partition, sku, location_id), 0, -1)
    except CacheErrors:
        request.app[METRICS].cache_errors.labels("read").inc()
        raise unavailable("the availability cache") from None
    now_ms = int(request.app[CLOCK]() * 1000)
    since_ms = now_ms - request.app[SETTINGS].history_horizon_seconds * 1000
    entries = history.present((orjson.loads(entry) for entry in raw), since_ms=since_ms)
    try:
        page = history.page(entries, limit=limit, cursor=cursor)
    except history.BadCursor as exc:
        raise Problem(422, f"cursor: {exc}", errors=[{"field": "cursor", "message": str(exc)}]) from None
    body = {"sku": sku, "location_id": location_id, "as_of": rfc3339(now_ms), "items": page.items,
            "next_cursor": page.cursor}
    return web.Response(body=orjson.dumps(body), content_type="application/json")
