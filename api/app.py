"""The app factory: ``create_app(settings, *, cache=None, broker=None)``; no module-level state.

Start-up fails with :class:`availability.channels.ChannelsFileError` (naming the file and the problem) when
``ATS_CHANNELS_FILE`` is not a valid channels file. Connections are made in ``cleanup_ctx`` and may be
down at start: requests that need them answer 503 until they come back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import cacheclient
from availability.channels import ChannelViews, load_channels
from availability.settings import Settings
from cacheclient.tasks import stop

from . import answercache, erp, openapi, routes
from .answercache import AnswerCache
from .answers import refresh_kept
from .broker import Broker
from .decisions import Decisions
from .edge import edge_middleware
from .keys import ANSWERS, BROKER, CACHE, CHANNELS, CLOCK, DECISIONS, DRIFT, METRICS, SETTINGS, SPEC, TOKENS
from .metrics import Metrics


def create_app(settings: Settings, *, cache: cacheclient.Cache | None = None, broker: Broker | None = None,
               channels: ChannelViews | None = None, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(middlewares=[edge_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CHANNELS] = channels if channels is not None else load_channels(settings.channels_file)
    app[TOKENS] = settings.tokens
    app[METRICS] = Metrics()
    app[DRIFT] = erp.DriftStatus()
    app[CLOCK] = clock
    app[ANSWERS] = AnswerCache(settings.answer_cache_skus, settings.partitions)

    async def connections(app: web.Application) -> AsyncIterator[None]:
        app[CACHE] = cache if cache is not None else cacheclient.connect(
            settings, socket_timeout=2.0, socket_connect_timeout=2.0)
        app[BROKER] = broker if broker is not None else Broker(settings)
        app[DECISIONS] = Decisions(app[CACHE])
        await app[DECISIONS].start()
        background = []
        if settings.drift_refresh_seconds:
            background.append(asyncio.create_task(erp.refresh_drift(app, settings.drift_refresh_seconds)))
        subscriber = None
        if settings.answer_cache_skus and cache is None:  # kept answers need the change messages
            subscriber = cacheclient.connect(settings, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0))
            background.append(asyncio.create_task(answercache.watch_changes(subscriber, app[ANSWERS])))
            background.append(asyncio.create_task(answercache.watch_epochs(app[CACHE], app[ANSWERS])))
            background.append(asyncio.create_task(refresh_kept(app[CACHE], app[ANSWERS])))
        yield
        await stop(background)
        if subscriber is not None:
            await subscriber.aclose()
        await app[DECISIONS].close()
        if broker is None:
            await app[BROKER].close()
        if cache is None:
            await app[CACHE].aclose()

    app.cleanup_ctx.append(connections)
    routes.install(app)
    app[SPEC] = openapi.build(routes.ROUTES, channels=app[CHANNELS].names)
    return app
