"""Chaos: the cache (Redis/Valkey) flushed, or stopped and started again on the same port, while a
worker runs and events keep coming.

Never a wrong answer: the API answers 503 with ``Retry-After`` while the cache is down and until the
owner of every partition in scope has re-written it whole (``streams/cacheepoch.py``); the worker
notices by itself, within seconds, without a restart. State and ERP postings end equal to the
arithmetic of every event produced, before and during the fault.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from availability import topics
from streams.admin import ensure_topics
from streams.embedded import EmbeddedServer, free_port, start_cache

from ..builders import hold, receipt, ref
from .apiserver import serve, settings_for
from .chaos import Probe, erp_agrees, report, until
from .cluster import Cluster
from .conftest import ready
from .test_recovery import converge, matches, workload

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 4
DOWN_SECONDS = 5.0


class RestartableCache:
    """A Valkey server of this test's own that can be stopped and started again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: EmbeddedServer | None = None
        self.start()

    def start(self) -> None:
        self.server = start_cache(self.directory, port=self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def own_cache(tmp_path: Path) -> Iterator[RestartableCache]:
    cache = RestartableCache(tmp_path / "cache")
    yield cache
    cache.stop()


@pytest.mark.parametrize("fault", ["flushall", "restart"])
async def test_a_lost_cache_is_503_until_the_worker_rewrites_it(own_broker: str, own_cache: RestartableCache,
                                                                tmp_path: Path, fault: str) -> None:
    cluster = Cluster(own_broker, own_cache.url, tmp_path, partitions=PARTITIONS)
    await ensure_topics(cluster.settings)
    before, expected = workload(random.Random(31), 1500)
    during, expected_during = workload(random.Random(32), 600)  # other stores and SKUs
    (sku, store), (on_hand, _) = next((key, value) for key, value in expected.items() if value[0])

    def right(body: dict[str, Any]) -> bool:
        return any(item["location_id"] == store and item["on_hand"] == on_hand for item in body["locations"])

    settings = settings_for(own_broker, own_cache.url, partitions=str(PARTITIONS))
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        await cluster.send_many(before)
        await converge(cluster, expected, timeout=120)
        async with serve(settings) as client:
            probe = Probe(client, sku, right)
            assert await probe.read_once() == 200
            async with probe.running():
                started = time.monotonic()
                if fault == "flushall":
                    await cluster.cache.flushall()
                else:
                    own_cache.stop()
                    await asyncio.sleep(DOWN_SECONDS)
                    own_cache.start()
                    started = time.monotonic()
                    await cluster.cache.connection_pool.disconnect()  # the test's own connections died with it
                sending = asyncio.create_task(cluster.send_many(during))
                answered = await until(lambda: _answers_right(probe, started), timeout=60,
                                       what="a right answer from the API")
                await until(lambda: matches(cluster, expected), timeout=60, what="the cache re-written")
                rewritten = time.monotonic() - started
                await sending
            await converge(cluster, {**expected, **expected_during}, timeout=120)
        postings = await erp_agrees(cluster, {**expected, **expected_during})
        assert probe.wrong == [], f"wrong answers while the cache was rebuilt: {probe.wrong[:3]}"
        assert probe.statuses[503] > 0
        assert probe.retry_after == {"1"}
        assert cluster.workers["w0"].poll() is None, "the worker died"
        assert "Traceback" not in cluster.log("w0")
        report(f"cache {fault}", down_seconds=DOWN_SECONDS if fault == "restart" else 0,
               first_right_answer_s=round(answered, 2), cache_rewritten_s=round(rewritten, 2),
               api_503=dict(probe.reasons), api_200=probe.statuses[200], wrong_answers=len(probe.wrong),
               positions=len(expected) + len(expected_during), erp_posting_ids=postings)
    finally:
        await cluster.close()


async def _answers_right(probe: Probe, since: float) -> bool:
    return probe.last_ok is not None and probe.last_ok > since


async def test_holds_are_written_again_with_their_partition(own_broker: str, own_cache: RestartableCache,
                                                           tmp_path: Path) -> None:
    # GET /v1/reservations/{id} reads the hold's decision from the cache: a flushed cache must get it back
    # with the partition's positions, not only the positions.
    cluster = Cluster(own_broker, own_cache.url, tmp_path, partitions=PARTITIONS)
    await ensure_topics(cluster.settings)
    store, sku, held, refused = ref("S"), ref("SKU"), ref("R"), ref("R")
    key = topics.reservation_key
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        await cluster.send(topics.RECEIPTS, receipt(store, (sku, 2)))
        await cluster.send(topics.RESERVATIONS, hold(store, held, (sku, 2)))
        await cluster.send(topics.RESERVATIONS, hold(store, refused, (sku, 1)))
        await until(lambda: _cached(cluster, key(held), key(refused)), timeout=60, what="both decisions cached")
        before = {rid: await cluster.cache.get(key(rid)) for rid in (held, refused)}
        await cluster.cache.flushall()
        await until(lambda: _cached(cluster, key(held), key(refused)), timeout=60, what="decisions written again")
        assert {rid: await cluster.cache.get(key(rid)) for rid in (held, refused)} == before
        assert 0 < await cluster.cache.ttl(key(held)) <= cluster.settings.dedupe_window_seconds
        # and the ids' claims: a retried hold of a lost claim must not be taken for another location
        claims = [await cluster.cache.get(topics.reservation_claim_key(rid)) for rid in (held, refused)]
        assert claims == [store.encode(), store.encode()]
        assert "Traceback" not in cluster.log("w0")
    finally:
        await cluster.close()


async def _cached(cluster: Cluster, *keys: str) -> bool:
    return await cluster.cache.exists(*keys) == len(keys)
