"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from availability import topics

from .keys import BROKER, CACHE, SETTINGS
from .problems import problem


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the cache and the broker answer, a worker's heartbeat is fresh and every fresh one is
    caught up: within a batch of its inputs' ends, every assigned partition loaded and in the cache."""
    checks: dict[str, str] = {}
    cache = request.app[CACHE]
    try:
        await asyncio.wait_for(cache.ping(), 1.0)
        checks["cache"] = "ok"
    except Exception as exc:  # redis raises its own hierarchy besides OSError and TimeoutError
        checks["cache"] = f"unreachable: {exc.__class__.__name__}"
    checks["broker"] = "ok" if await request.app[BROKER].reachable() else "unreachable"
    checks["workers"] = await _workers(request) if checks["cache"] == "ok" else "unknown"
    if all(value == "ok" for value in checks.values()):
        return web.json_response({"status": "ready", "checks": checks})
    return problem(503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
                   headers={"Retry-After": "1"}, checks=checks)


async def _workers(request: web.Request) -> str:
    cache = request.app[CACHE]
    stale_after = request.app[SETTINGS].tick_interval_ms / 1000 * 5 + 5
    now = time.time()
    fresh = caught_up = loading = 0
    async for key in cache.scan_iter(match=topics.HEARTBEAT_PREFIX + "*", count=100):
        raw = await cache.get(key)
        if not raw:
            continue
        beat = orjson.loads(raw)
        if now - beat.get("at", 0) <= stale_after:
            fresh += 1
            caught_up += bool(beat.get("caught_up"))
            loading += len(beat.get("loading") or ())
    if not fresh:
        return "no worker heartbeat"
    if caught_up == fresh:
        return "ok"
    # a worker is caught up only once every partition it was assigned is loaded and written to the cache whole
    return f"loading {loading} partition(s)" if loading else "catching up"
