"""ERP reconciliation over HTTP (admin scope): the ERP posts a snapshot of its book on-hand, and the drift
of every booked position against the engine's positions (read from the cache) is one GET away.

``PUT /v1/erp/book`` replaces the stored snapshot (one cache key); ``GET /v1/erp/drift`` computes the drift
with :func:`availability.drift.drift` (``engine on_hand - booked on_hand``) and sets the drift gauges, which
:func:`refresh_drift` also recomputes every ``ATS_DRIFT_REFRESH_SECONDS`` in the background.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from availability import topics
from availability.drift import BookError, BookLine, drift, one_per_position
from availability.wire import rfc3339
from cacheclient import CacheErrors

from .answers import CacheRebuilding, read_positions, unreadable
from .bodies import parse, read_json
from .keys import CACHE, CLOCK, DRIFT, METRICS, SETTINGS
from .models import ErpBook
from .problems import Problem, unavailable

log = logging.getLogger(__name__)


@dataclass
class DriftStatus:
    """The last drift computed (the console shows it beside the gauges)."""

    positions: int = 0
    units: int = 0
    checked: float = 0.0  # epoch seconds; 0: never


async def put_book(request: web.Request) -> web.Response:
    """``PUT /v1/erp/book`` with ``{"positions": [{"sku", "location_id", "on_hand"}, ...]}``."""
    body = parse(ErpBook, await read_json(request))
    try:
        book = one_per_position(BookLine(p.sku, p.location_id, p.on_hand) for p in body.positions)
    except BookError as exc:
        raise Problem(422, str(exc), errors=[{"field": "positions", "message": str(exc)}]) from None
    stored = {"posted_at": rfc3339(int(request.app[CLOCK]() * 1000)), "positions": [list(line) for line in book]}
    try:
        await request.app[CACHE].set(topics.ERP_BOOK_KEY, orjson.dumps(stored))
    except CacheErrors:
        request.app[METRICS].cache_errors.labels("write").inc()
        raise unavailable("the cache") from None
    return web.json_response({"positions": len(book), "posted_at": stored["posted_at"]}, dumps=_dumps)


async def get_drift(request: web.Request) -> web.Response:
    """``GET /v1/erp/drift``: every position of the posted book (and every engine position of its SKUs)."""
    try:
        report = await compute_drift(request.app)
    except (*CacheErrors, CacheRebuilding) as exc:
        raise unreadable(request, exc) from None
    if report is None:
        raise Problem(404, "no ERP book has been posted; PUT /v1/erp/book first")
    return web.json_response(report, dumps=_dumps)


async def compute_drift(app: web.Application) -> dict[str, Any] | None:
    """The drift report of the posted book (None: none posted), and the drift gauges set from it. Raises
    :class:`CacheRebuilding` while the workers re-write positions the cache lost: never a drift of them."""
    cache, metrics, now = app[CACHE], app[METRICS], app[CLOCK]()
    raw = await cache.get(topics.ERP_BOOK_KEY)
    if raw is None:
        return None
    stored = orjson.loads(raw)
    book = [BookLine(sku, location, on_hand) for sku, location, on_hand in stored["positions"]]
    skus = sorted({line.sku for line in book})
    found = await read_positions(cache, skus, None, owners=list(range(app[SETTINGS].partitions)))
    engine = {(sku, location): value[0] for sku, pairs in zip(skus, found, strict=True) for location, value in pairs}
    rows = drift(book, engine)
    drifting = [row for row in rows if row.drift]
    total = sum(abs(row.drift) for row in drifting)
    metrics.erp_drift_positions.set(len(drifting))
    metrics.erp_drift_units.set(total)
    metrics.erp_drift_checked.set(now)
    app[DRIFT].positions, app[DRIFT].units, app[DRIFT].checked = len(drifting), total, now
    return {"posted_at": stored["posted_at"], "as_of": rfc3339(int(now * 1000)),
            "drifting": len(drifting), "total_abs_drift": total, "positions": [row._asdict() for row in rows]}


async def refresh_drift(app: web.Application, every_seconds: float) -> None:
    """Keep the drift gauges current without anyone calling ``GET /v1/erp/drift`` (an alert needs that).
    A cache outage is counted and retried at the next interval; it never stops the API."""
    while True:
        try:
            await compute_drift(app)
        except CacheErrors as exc:
            app[METRICS].cache_errors.labels("read").inc()
            log.warning("ERP drift refresh: the cache does not answer: %s", exc)
        except CacheRebuilding as exc:  # the gauges keep their last values until the positions are back
            app[METRICS].cache_errors.labels("rebuilding").inc()
            log.info("ERP drift refresh skipped: the workers are re-writing partitions %s", exc.partitions)
        await asyncio.sleep(every_seconds)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
