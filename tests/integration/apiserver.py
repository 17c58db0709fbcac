"""The real API app on a real port for tests: the factory, aiohttp's test server and client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

import cacheclient
from api.app import create_app
from availability import topics
from availability.channels import ChannelViews, parse_channels
from availability.settings import Settings, load_settings

READER = "reader-token-0123456789"
RESERVER = "reserver-token-0123456789"
INGESTER = "ingester-token-0123456789"
ADMIN = "admin-token-0123456789"
TOKENS = (f"{READER}=availability:read;{RESERVER}=reservations:write,availability:read;"
          f"{INGESTER}=events:write;{ADMIN}=availability:read,reservations:write,events:write,admin")

CHANNELS = parse_channels("""{"channels": {
    "ecom": {"locations": "all", "default_buffer": 1, "buffers": {"DC-buffered": 5}},
    "stores": {"locations": ["S-listed-1", "S-listed-2"], "buffers": {"S-listed-2": 2}}
}}""")


def settings_for(broker_url: str, redis_url: str, **overrides: str) -> Settings:
    env = {"ATS_BROKER_URL": broker_url, "ATS_REDIS_URL": redis_url, "ATS_API_TOKENS": TOKENS}
    env.update({f"ATS_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def serve(settings: Settings, *, channels: ChannelViews | None = CHANNELS, **kwargs: Any,
                ) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, channels=channels, **kwargs)
    async with TestClient(TestServer(app)) as client:
        yield client


async def vouch_for_cache(settings: Settings) -> None:
    """Write the cache epochs of every partition, as workers do after a whole snapshot: for tests that
    serve the API with no worker (the API answers 503 for a partition whose epoch is missing)."""
    cache = cacheclient.connect(settings)
    try:
        await cache.hset(topics.CACHE_EPOCHS_KEY, mapping={str(p): "test" for p in range(settings.partitions)})
    finally:
        await cache.aclose()
