"""The product on a real Redis Cluster (three Valkey masters, ``ATS_REDIS_CLUSTER=true``): a real worker
process writes the cache, the real API app reads it. Events in, answers back for SKUs on every node,
a hold decided (201, then 409 for more than is left), and a ``FLUSHALL`` on every node (or on one)
handled as on a single Redis: 503 with ``Retry-After`` until the worker has re-written it, never a
wrong answer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.crc import key_slot

import cacheclient
from availability import topics, wire
from availability.model import Position
from availability.settings import load_settings
from streams.access import check_redis
from tests.builders import receipt, ref
from tests.rediscluster import SLOTS, CacheCluster, start_cache_cluster

from .apiserver import READER, RESERVER, bearer, serve, settings_for
from .cluster import Cluster, eventually
from .conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PARTITIONS = 4
Client = TestClient[Any, Any]


def skus_on_every_node(masters: int) -> list[str]:
    """One fresh SKU whose hash lives on each master (the fixture gives master i the i-th share of slots)."""
    found: dict[int, str] = {}
    while len(found) < masters:
        sku = ref("SKU")
        found.setdefault(min(key_slot(topics.position_key(sku).encode()) * masters // SLOTS, masters - 1), sku)
    return [found[node] for node in range(masters)]


@pytest.fixture(scope="module")
async def deployment(module_broker: str, redis_cluster: CacheCluster, tmp_path_factory: pytest.TempPathFactory,
                     ) -> AsyncIterator[tuple[Cluster, Client]]:
    cluster = Cluster(module_broker, redis_cluster.url, tmp_path_factory.mktemp("on-cluster"), partitions=PARTITIONS,
                      env={"ATS_REDIS_CLUSTER": "true"})
    settings = settings_for(module_broker, redis_cluster.url, redis_cluster="true", partitions=str(PARTITIONS),
                            hold_timeout_ms="20000")
    async with running(cluster), serve(settings) as client:
        yield cluster, client
    assert "Traceback" not in cluster.log("w0")


async def answer(client: Client, sku: str, store: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/v1/availability/{sku}", params={"location": store}, headers=bearer(READER))
    return response.status, await response.json()


async def test_events_in_answers_out_and_a_hold_decided(deployment: tuple[Cluster, Client],
                                                        redis_cluster: CacheCluster) -> None:
    cluster, client = deployment
    store, skus = ref("S"), skus_on_every_node(len(redis_cluster.nodes))
    await cluster.send(topics.RECEIPTS, receipt(store, *((sku, 5 + i) for i, sku in enumerate(skus))))

    async def stocked() -> bool:
        response = await client.post("/v1/availability/query", json={"skus": skus, "locations": [store]},
                                     headers=bearer(READER))
        if response.status != 200:
            return False
        items = (await response.json())["items"]
        return [item["network_ats"] for item in items] == [5, 6, 7]

    await eventually(stocked, timeout=30, what="every node's SKU answered")

    async def kept() -> bool:  # the change subscription (on one node) and the epochs copies are live
        await answer(client, skus[0], store)
        metrics = await (await client.get("/metrics")).text()
        return any(line.startswith('ats_api_answers_total{source="kept"}') and float(line.split()[-1]) > 0
                   for line in metrics.splitlines())

    await eventually(kept, timeout=10, what="an answer kept in memory, served again")

    body = {"reservation_id": ref("R"), "location_id": store, "lines": [{"sku": skus[2], "qty": 4}]}
    response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
    assert response.status == 201, await response.text()
    assert (await response.json())["status"] == "held"
    # the decision dropped the kept answer: the next read shows the hold (7 - 4)
    status, found = await answer(client, skus[2], store)
    assert (status, found["network_ats"], found["locations"][0]["reserved"]) == (200, 3, 4)
    # the history push (a Lua script, loaded on every master when a node does not know), with the next flush
    async def history() -> int:
        response = await client.get(f"/v1/positions/{skus[0]}/{store}/history", headers=bearer(READER))
        assert response.status == 200, await response.text()
        return len((await response.json())["items"])

    assert await eventually(history, timeout=10, what="the history written with the flush") == 1

    refused = {"reservation_id": ref("R"), "location_id": store, "lines": [{"sku": skus[2], "qty": 4}]}
    response = await client.post("/v1/reservations", json=refused, headers=bearer(RESERVER))
    assert response.status == 409
    assert (await response.json())["shortfalls"] == [{"sku": skus[2], "requested": 4, "available": 3}]


@pytest.mark.parametrize("lost", ["every node", "one node"])
async def test_a_flushall_is_503_until_rewritten(deployment: tuple[Cluster, Client], redis_cluster: CacheCluster,
                                                 lost: str) -> None:
    """``FLUSHALL`` on every node (as ``redis-cli --cluster call``), or on the one node that holds the SKU
    read: a master that restarts empty loses only its own slots."""
    cluster, client = deployment
    store, skus = ref("S"), skus_on_every_node(len(redis_cluster.nodes))
    reservation_id = ref("R")
    await cluster.send(topics.RECEIPTS, receipt(store, *((sku, 3) for sku in skus)))
    await eventually(lambda: _all_answer(client, skus, store, 3), timeout=30, what="stock answered")
    response = await client.post("/v1/reservations", headers=bearer(RESERVER), json={
        "reservation_id": reservation_id, "location_id": store, "lines": [{"sku": skus[0], "qty": 1}]})
    assert response.status == 201

    if lost == "every node":
        redis_cluster.flushall()
    else:
        with redis_cluster.clients()[1] as node:  # the master of skus[1]
            node.flushall()
    started, statuses, wrong = time.monotonic(), [], []
    while time.monotonic() - started < 60:
        read = await client.get(f"/v1/availability/{skus[1]}", params={"location": store}, headers=bearer(READER))
        status, body = read.status, await read.json()
        statuses.append(status)
        if status == 200 and [item["on_hand"] for item in body["locations"]] != [3]:
            wrong.append(body)
        if status == 503:
            assert read.headers["Retry-After"] == "1"
        if status == 200 and 503 in statuses:
            break
        await asyncio.sleep(0.01)
    assert wrong == [], f"answers read as if the flushed cache were the truth: {wrong[:3]}"
    assert 503 in statuses, f"the API never noticed that {lost} lost its data"
    assert statuses[-1] == 200, "the worker did not re-write the cache within 60 s"
    assert await _all_answer(client, skus, store, 3)
    # the hold the partition remembers is written again with it
    response = await client.get(f"/v1/reservations/{reservation_id}", headers=bearer(RESERVER))
    assert response.status == 200
    assert (await response.json())["status"] == "held"


async def _all_answer(client: Client, skus: list[str], store: str, on_hand: int) -> bool:
    for sku in skus:
        status, body = await answer(client, sku, store)
        if status != 200 or [item["on_hand"] for item in body["locations"]] != [on_hand]:
            return False
    return True


def test_the_cluster_fixture_spans_three_masters(redis_cluster: CacheCluster) -> None:
    for client in redis_cluster.clients():
        with client:
            info = client.execute_command("CLUSTER INFO")
            assert (info["cluster_state"], int(info["cluster_size"])) == ("ok", 3)


async def test_the_cli_reads_positions_on_every_node(redis_cluster: CacheCluster, tmp_path: Path) -> None:
    """The blocking client (``ats erp reconcile``, the start-up credentials check) on the cluster too."""
    skus = skus_on_every_node(len(redis_cluster.nodes))
    cache = cacheclient.connect_url(redis_cluster.url, cluster=True)
    try:
        for i, sku in enumerate(skus):
            await cache.hset(topics.position_key(sku), mapping={
                "S1": orjson.dumps(wire.cache_value(Position(on_hand=10 + i)))})
    finally:
        await cache.aclose()
    settings = load_settings({"ATS_REDIS_URL": redis_cluster.url, "ATS_REDIS_CLUSTER": "true"})
    assert await asyncio.to_thread(check_redis, settings)
    book = tmp_path / "book.csv"
    book.write_text("sku,location_id,on_hand\n" + "".join(f"{sku},S1,10\n" for sku in skus))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_REDIS_URL=redis_cluster.url, ATS_REDIS_CLUSTER="true")
    command = [sys.executable, "-m", "streams", "erp", "reconcile", str(book)]
    out = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=env, timeout=30,
                                  check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "3 positions, 2 drifting, total |drift| 3"


async def test_a_pipeline_answers_in_the_order_queued_across_stages(redis_cluster: CacheCluster) -> None:
    """Announcements and epochs commands run in a second stage; the results still come back in order."""
    skus = skus_on_every_node(len(redis_cluster.nodes))
    cache = cacheclient.connect_url(redis_cluster.url, cluster=True)
    try:
        pipe = cache.pipeline(transaction=False)
        pipe.hset(topics.position_key(skus[0]), mapping={"S1": b"a"})
        pipe.publish(topics.CHANGED_CHANNEL, skus[0])
        pipe.hset(topics.CACHE_EPOCHS_KEY, mapping={"999": "test@1"})
        pipe.hget(topics.position_key(skus[0]), "S1")
        pipe.hmget(topics.CACHE_EPOCHS_KEY, ["999", "998"])
        pipe.hgetall(topics.position_key(skus[1]))
        answers = await pipe.execute()
        assert answers[0] == 1
        assert isinstance(answers[1], int)  # subscribers reached
        assert answers[3:] == [b"a", [b"test@1", None], {}]
        # every master holds a copy; one copy lost reads as the field missing
        copies = cache.epoch_copies()  # type: ignore[union-attr]
        assert len(copies) == 3
        assert [await cache.hget(copy, "999") for copy in copies] == [b"test@1"] * 3  # type: ignore[misc]
        await cache.hdel(copies[1], "999")  # type: ignore[misc]
        assert await cache.hmget(topics.CACHE_EPOCHS_KEY, ["999"]) == [None]  # type: ignore[misc]
        await cache.hdel(topics.CACHE_EPOCHS_KEY, "999")  # type: ignore[misc]
    finally:
        await cache.aclose()


async def test_a_cluster_that_does_not_answer_is_503(module_broker: str, tmp_path: Path) -> None:
    """No node answers: redis-py's cluster client raises its own family (no ``RedisError``), still a 503."""
    down = start_cache_cluster(tmp_path / "down")
    down.stop()
    settings = settings_for(module_broker, down.url, redis_cluster="true")
    async with serve(settings) as client:
        status, body = await answer(client, ref("SKU"), ref("S"))
    assert status == 503, body
    assert "cache" in body["detail"]
