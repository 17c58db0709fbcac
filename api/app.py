"""The app factory: ``create_app(settings, *, cache=None, broker=None)``; no module-level state."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from availability.settings import Settings

from . import health
from .broker import Broker
from .keys import BROKER, CACHE, SETTINGS
from .problems import problem_middleware


def create_app(settings: Settings, *, cache: Redis | None = None, broker: Broker | None = None) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings

    async def connections(app: web.Application) -> AsyncIterator[None]:
        app[CACHE] = cache if cache is not None else Redis.from_url(
            settings.redis_url or "", socket_timeout=2.0, socket_connect_timeout=2.0)
        app[BROKER] = broker if broker is not None else Broker(settings)
        yield
        if broker is None:
            await app[BROKER].close()
        if cache is None:
            await app[CACHE].aclose()

    app.cleanup_ctx.append(connections)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    return app
