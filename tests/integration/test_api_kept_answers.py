"""Answers the API keeps in memory (``api/answercache.py``), against a real cache: served from memory
between changes, dropped by a worker's change message, never served while the subscription is lost or a
cache epoch is missing; and end to end with a real worker, an event's effect still shows.

The tests with a cache of their own write positions, epochs and change messages exactly as a worker's
cache write does (the same keys, values and message, from ``availability/``), so the cache is theirs
to flush and its subscribers theirs to kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from api import answercache
from api.answers import READ_ATTEMPTS, CacheRebuilding, read_kept, read_positions
from api.keys import ANSWERS, CACHE, METRICS
from availability import topics, wire
from streams.embedded import start_cache
from tests.builders import receipt, ref, sale

from .apiserver import READER, bearer, serve, settings_for, vouch_for_cache
from .cluster import Cluster, eventually
from .test_api_reads import post_events, settled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Client = TestClient[Any, Any]
PARTITIONS = 2


@pytest.fixture
def own_cache(tmp_path: Path) -> Iterator[str]:
    server = start_cache(tmp_path / "cache")
    yield server.url
    server.stop()


@pytest.fixture
async def cache(own_cache: str) -> AsyncIterator[Redis]:
    cache = Redis.from_url(own_cache)
    yield cache
    await cache.aclose()


@asynccontextmanager
async def api(redis_url: str) -> AsyncIterator[Client]:
    settings = settings_for("kafka://127.0.0.1:1", redis_url, partitions=str(PARTITIONS))  # reads only
    await vouch_for_cache(settings)
    async with serve(settings) as client:
        await eventually(lambda: _usable(client), timeout=10, what="kept answers served")
        yield client


async def _usable(client: Client) -> bool:
    return bool(client.app[ANSWERS].usable())


async def write(cache: Redis, sku: str, location: str, on_hand: int, *, publish: bool = True) -> None:
    """One position, as a worker's cache write has it: the hash field, then the change message."""
    pipe = cache.pipeline(transaction=False)
    pipe.hset(topics.position_key(sku), location, orjson.dumps([on_hand, 0, 0, 0, 0, 1_764_000_000_000]))
    if publish:
        pipe.publish(topics.CHANGED_CHANNEL, wire.changed_message([sku]))
    await pipe.execute()


async def on_hand(client: Client, sku: str) -> tuple[int, Any]:
    response = await client.get(f"/v1/availability/{sku}", headers=bearer(READER))
    body = await response.json()
    return response.status, body["locations"][0]["on_hand"] if response.status == 200 else body


async def shows(client: Client, sku: str, value: int, what: str) -> None:
    async def check() -> bool:
        return await on_hand(client, sku) == (200, value)

    await eventually(check, timeout=5, what=what)


def served(client: Client, source: str) -> float:
    value = client.app[METRICS].registry.get_sample_value("ats_api_answers_total", {"source": source})
    return value or 0.0


async def test_kept_between_changes_and_dropped_by_a_change_message(cache: Redis, own_cache: str) -> None:
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    async with api(own_cache) as client:
        assert await on_hand(client, sku) == (200, 5)
        kept = served(client, "kept")
        await write(cache, sku, "S-1", 9, publish=False)  # no message: the kept answer stands
        assert await on_hand(client, sku) == (200, 5)
        assert served(client, "kept") == kept + 1
        await write(cache, sku, "S-1", 7)  # the message drops it: the next read goes to the cache

        await shows(client, sku, 7, "the changed answer")
        bulk = await client.post("/v1/availability/query", json={"skus": [sku, ref("SKU"), sku]},
                                 headers=bearer(READER))
        items = (await bulk.json())["items"]
        assert [item["network_ats"] for item in items] == [7, 0, 7]
        assert len({item["as_of"] for item in items}) == 1


async def position_reads(cache: Redis) -> int:
    """Reads of positions the cache has served: each ends with one ``HMGET`` of the partitions' epochs
    (``read_positions``), which nothing else of an API with no ERP book sends (its epochs poll is an
    ``HGETALL``)."""
    return int((await cache.info("commandstats")).get("cmdstat_hmget", {}).get("calls", 0))


async def test_reads_of_a_sku_not_kept_under_way_at_once_share_one_read(cache: Redis, own_cache: str) -> None:
    """A hot SKU not kept: the requests for it before its read is back join that read, unless something
    was dropped since it started; a reader that gives up does not take the read from the others."""
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    async with api(own_cache) as client:
        answers, api_cache = client.app[ANSWERS], client.app[CACHE]
        before = await position_reads(cache)
        found = await asyncio.gather(*(read_kept(api_cache, answers, [sku]) for _ in range(10)))
        assert await position_reads(cache) == before + 1
        assert {entry.positions[0][1][0] for [entry] in found} == {5}
        assert answers.get(sku) is found[0][0], "kept"
        assert answers.reads == {}, "forgotten once back"

        answers.changed([sku])
        await write(cache, sku, "S-1", 6, publish=False)
        first = asyncio.ensure_future(read_kept(api_cache, answers, [sku]))
        await asyncio.sleep(0)  # under way
        answers.changed([sku])  # a change message meanwhile: a read asked for now must not be the older one
        [second] = await read_kept(api_cache, answers, [sku])
        await first
        assert await position_reads(cache) == before + 3
        assert second.positions[0][1][0] == 6

        answers.changed([sku])
        giving_up, staying = (asyncio.ensure_future(read_kept(api_cache, answers, [sku, ref("SKU")])) for _ in "ab")
        await asyncio.sleep(0)
        giving_up.cancel()
        [entry, unknown] = await staying
        assert (entry.positions[0][1][0], unknown.positions) == (6, [])
        assert giving_up.cancelled()


async def test_a_kept_answer_served_past_half_its_age_is_read_again_in_the_background(
        cache: Redis, own_cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """So a hot SKU's kept answer never ages out on a request's path; a change no worker announced (the
    age limit's reason) still shows, by the refresh."""
    monkeypatch.setattr(answercache, "REFRESH_AGE_S", 1.0)
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    async with api(own_cache) as client:
        assert await on_hand(client, sku) == (200, 5)
        read = served(client, "read")
        await write(cache, sku, "S-1", 9, publish=False)
        assert await on_hand(client, sku) == (200, 5), "kept: not yet due"
        await asyncio.sleep(1.05)
        assert await on_hand(client, sku) == (200, 5), "served while due"
        await shows(client, sku, 9, "read again in the background")
        assert served(client, "read") == read, "never on a request's path"


async def test_a_lost_subscription_reads_the_cache_until_subscribed_again(cache: Redis, own_cache: str) -> None:
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    async with api(own_cache) as client:
        assert await on_hand(client, sku) == (200, 5)
        answers = client.app[ANSWERS]
        killed = await cache.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1
        await write(cache, sku, "S-1", 6, publish=False)  # changed while nobody listened

        await shows(client, sku, 6, "the answer written while unsubscribed")
        await eventually(lambda: _usable(client), timeout=10, what="subscribed again")
        assert answers.subscribed
        assert await on_hand(client, sku) == (200, 6)
        await write(cache, sku, "S-1", 8)

        await shows(client, sku, 8, "a change after subscribing again")


async def test_a_cache_that_lost_its_data_is_503_even_for_a_kept_answer(cache: Redis, own_cache: str) -> None:
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    async with api(own_cache) as client:
        assert await on_hand(client, sku) == (200, 5)
        await cache.flushall()  # no message: the epochs say it

        async def unavailable() -> bool:
            status, body = await on_hand(client, sku)
            return status == 503 and "re-writing" in body["detail"]

        await eventually(unavailable, timeout=5, what="503 for a kept SKU after FLUSHALL")
        assert not client.app[ANSWERS].kept
        await write(cache, sku, "S-1", 4)  # the worker writes its partitions whole, then their epochs
        await cache.hset(topics.CACHE_EPOCHS_KEY, mapping={str(p): "again" for p in range(PARTITIONS)})

        await shows(client, sku, 4, "answers again once re-written")


async def test_a_locations_lowest_is_503_while_its_positions_are_lost(cache: Redis, own_cache: str) -> None:
    """Not an empty list: the index and positions of a cache that lost its data are gone too."""
    sku, location = ref("SKU"), ref("S")
    await write(cache, sku, location, 5)
    await cache.zadd(topics.location_index_key(location), {sku: 5})
    async with api(own_cache) as client:
        response = await client.get(f"/v1/locations/{location}/lowest", headers=bearer(READER))
        assert [(item["sku"], item["ats"]) for item in (await response.json())["items"]] == [(sku, 5)]
        await cache.flushall()
        response = await client.get(f"/v1/locations/{location}/lowest", headers=bearer(READER))
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert "re-writing" in (await response.json())["detail"]


async def test_turned_off_every_read_goes_to_the_cache(cache: Redis, own_cache: str) -> None:
    sku = ref("SKU")
    await write(cache, sku, "S-1", 5)
    settings = settings_for("kafka://127.0.0.1:1", own_cache, partitions=str(PARTITIONS), answer_cache_skus="0")
    await vouch_for_cache(settings)
    async with serve(settings) as client:
        assert await on_hand(client, sku) == (200, 5)
        await write(cache, sku, "S-1", 6, publish=False)
        assert await on_hand(client, sku) == (200, 6)
        assert served(client, "kept") == 0
        assert served(client, "direct") == 2


async def test_a_workers_change_shows_through_a_kept_answer(engine: Cluster) -> None:
    """End to end: the worker's cache write carries the change message."""
    store, sku = ref("S"), ref("SKU")
    async with serve(settings_for(engine.broker_url, engine.redis_url)) as client:
        await eventually(lambda: _usable(client), timeout=30, what="kept answers served")
        await post_events(client, receipt(store, (sku, 10)))
        await settled(client, sku, 10)
        kept = served(client, "kept")

        async def from_memory() -> bool:  # the read that first saw 10 may have raced its change message
            assert await on_hand(client, sku) == (200, 10)
            return served(client, "kept") > kept

        await eventually(from_memory, timeout=10, what="the answer served from memory")
        await post_events(client, sale(store, (sku, 3)))
        await settled(client, sku, 7)


async def test_positions_read_across_a_rewrite_of_their_partition_are_read_again(own_cache: str) -> None:
    """An owner that re-writes a partition whole (after a loss) writes its positions, then a new epoch
    stamp: positions read before that stamp and checked against epochs read after it could be the lost
    ones. ``read_positions`` checks the epochs after its read against those before it, reads again
    when they differ, and answers 503 rather than read for ever while they keep changing."""
    sku = ref("SKU")
    owners = list(range(PARTITIONS))
    rewrites = [0]

    class Rewritten(Redis):  # the real cache; the partitions are re-written right before each read of it
        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
            pipe = super().pipeline(transaction, shard_hint)
            execute = pipe.execute

            async def rewritten_first(raise_on_error: bool = True) -> Any:
                if rewrites[0]:
                    rewrites[0] -= 1
                    await self.hset(topics.CACHE_EPOCHS_KEY, mapping={str(p): ref("W") for p in owners})
                return await execute(raise_on_error)

            pipe.execute = rewritten_first
            return pipe

    cache = Rewritten.from_url(own_cache)
    try:
        await write(cache, sku, "S-1", 5)
        await cache.hset(topics.CACHE_EPOCHS_KEY, mapping={str(p): "first" for p in owners})
        stale = {str(p).encode(): b"before" for p in owners}  # as a poll read them before a re-write
        assert await read_positions(cache, [sku], None, owners=owners, epochs=stale) == [[("S-1", (5, 0, 0, 0, 0,
                                                                                                 1_764_000_000_000))]]
        rewrites[0] = 1  # once: read again, and answered
        assert len(await read_positions(cache, [sku], None, owners=owners)) == 1
        assert rewrites[0] == 0
        rewrites[0] = READ_ATTEMPTS  # at every read: 503
        with pytest.raises(CacheRebuilding) as rebuilding:
            await read_positions(cache, [sku], None, owners=owners)
        assert rebuilding.value.partitions == owners  # named in the 503's detail
        assert rewrites[0] == 0
    finally:
        await cache.aclose()
