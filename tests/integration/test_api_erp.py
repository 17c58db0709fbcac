"""`PUT /v1/erp/book` and `GET /v1/erp/drift` (admin) on the real app and the real cache; positions are
written to the cache as the workers write them. Expected drifts are worked by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from availability import topics, wire
from availability.model import Position
from availability.settings import Settings
from streams.embedded import start_cache
from tests.builders import ref

from .apiserver import ADMIN, bearer, serve, settings_for, vouch_for_cache

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def settings(module_broker: str, redis_url: str) -> Settings:
    return settings_for(module_broker, redis_url)


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[Client]:
    await vouch_for_cache(settings)  # no worker here: the test writes the positions
    async with serve(settings) as client:
        yield client


async def test_drift_of_a_posted_book_and_the_gauges(client: Client, redis_url: str) -> None:
    from redis.asyncio import Redis

    sku, other = ref("SKU"), ref("SKU")
    cache = Redis.from_url(redis_url)
    try:
        await cache.hset(topics.position_key(sku), mapping={  # type: ignore[misc]
            "S1": orjson.dumps(wire.cache_value(Position(on_hand=10))),
            "S2": orjson.dumps(wire.cache_value(Position(on_hand=3)))})
    finally:
        await cache.aclose()
    book = {"positions": [{"sku": sku, "location_id": "S1", "on_hand": 10},
                          {"sku": sku, "location_id": "S2", "on_hand": 5},
                          {"sku": other, "location_id": "S1", "on_hand": 2}]}
    stored = await client.put("/v1/erp/book", json=book, headers=bearer(ADMIN))
    assert stored.status == 200
    assert (await stored.json())["positions"] == 3

    response = await client.get("/v1/erp/drift", headers=bearer(ADMIN))
    assert response.status == 200
    report = await response.json()
    assert report["positions"] == [
        {"sku": s, "location_id": loc, "erp_on_hand": erp, "engine_on_hand": engine, "drift": engine - erp}
        for s, loc, erp, engine in sorted([(sku, "S1", 10, 10), (sku, "S2", 5, 3), (other, "S1", 2, 0)])]
    assert (report["drifting"], report["total_abs_drift"]) == (2, 4)

    metrics = await (await client.get("/metrics")).text()
    assert "ats_erp_drift_positions 2.0" in metrics
    assert "ats_erp_drift_units 4.0" in metrics


async def test_a_book_listing_a_position_twice_is_refused(client: Client) -> None:
    twice = {"positions": [{"sku": "A", "location_id": "S1", "on_hand": 1},
                           {"sku": "A", "location_id": "S1", "on_hand": 2}]}
    response = await client.put("/v1/erp/book", json=twice, headers=bearer(ADMIN))
    assert response.status == 422
    assert "listed twice" in (await response.json())["detail"]
    bad = await client.put("/v1/erp/book", json={"positions": [{"sku": "A", "location_id": "S1", "on_hand": "1"}]},
                           headers=bearer(ADMIN))
    assert bad.status == 422


async def test_drift_is_503_while_the_workers_re_write_positions_the_cache_lost(tmp_path: Path) -> None:
    """A cache that lost positions (a restarted node) would show them all as drifted: not a drift, a 503."""
    from redis.asyncio import Redis

    server = start_cache(tmp_path / "cache")
    settings = settings_for("kafka://127.0.0.1:1", server.url, partitions="2")  # reads only
    cache = Redis.from_url(server.url)
    try:
        await cache.hset(topics.position_key("A"), "S1", wire.cache_field(Position(on_hand=10)))
        await vouch_for_cache(settings)
        async with serve(settings) as client:
            book = {"positions": [{"sku": "A", "location_id": "S1", "on_hand": 10}]}
            assert (await client.put("/v1/erp/book", json=book, headers=bearer(ADMIN))).status == 200
            assert (await (await client.get("/v1/erp/drift", headers=bearer(ADMIN))).json())["drifting"] == 0
            await cache.hdel(topics.CACHE_EPOCHS_KEY, "1")  # one partition's positions lost, not yet re-written
            response = await client.get("/v1/erp/drift", headers=bearer(ADMIN))
            assert response.status == 503
            assert "re-writing" in (await response.json())["detail"]
    finally:
        await cache.aclose()
        server.stop()
