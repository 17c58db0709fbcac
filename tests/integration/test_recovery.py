"""Crash and replay: kill -9 a worker mid-stream, restart it on an empty data dir, compare with the
arithmetic of the events produced (the contract worked by hand, not the engine's own output).

Each test runs on a broker of its own so that it can choose the partition count. The broker's end
offsets are wrong for multi-record batches (``../shared/EMBEDDED.md``); the changelog here is written in
multi-record batches, so these tests are also what proves recovery reads it whole.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from availability import topics
from streams.admin import ensure_topics
from tests.builders import delta, receipt, ref, sale, transfer

from .apiserver import READER, bearer, serve, settings_for
from .chaos import erp_agrees, report
from .cluster import Cluster, eventually
from .conftest import ready

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]
chaos = pytest.mark.chaos  # the kill -9 and takeover faults of `make chaos` (the third test is not a fault)

Key = tuple[str, str]


def workload(rng: random.Random, count: int) -> tuple[list[tuple[str, dict[str, Any], str | None]],
                                                      dict[Key, list[int]]]:
    """Events with duplicates and wrong keys, and the state they imply: ``{(sku, loc): [on_hand, in_transit]}``."""
    stores = [ref("S") for _ in range(6)]
    skus = [ref("SKU") for _ in range(30)]
    expected: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    messages: list[tuple[str, dict[str, Any], str | None]] = []
    for _ in range(count):
        store, sku, qty = rng.choice(stores), rng.choice(skus), rng.randint(1, 5)
        roll = rng.random()
        if roll < 0.35:
            event, topic = receipt(store, (sku, qty)), topics.RECEIPTS
            expected[(sku, store)][0] += qty
        elif roll < 0.75:
            event, topic = sale(store, (sku, qty)), topics.SALES
            expected[(sku, store)][0] -= qty
        elif roll < 0.85:
            event, topic = delta(store, (sku, -qty)), topics.ADJUSTMENTS
            expected[(sku, store)][0] -= qty
        else:
            other = rng.choice([s for s in stores if s != store])
            event, topic = transfer(store, other, "shipped", (sku, qty)), topics.TRANSFERS
            expected[(sku, store)][0] -= qty
            expected[(sku, other)][1] += qty
        key = f"till-{rng.randint(0, 99)}" if rng.random() < 0.1 else None
        messages.append((topic, event, key))
        if rng.random() < 0.05:  # a redelivery: no further effect
            messages.append((topic, event, None))
    return messages, dict(expected)


async def matches(cluster: Cluster, expected: dict[Key, list[int]]) -> bool:
    for (sku, store), (on_hand, in_transit) in expected.items():
        value = await cluster.position(sku, store)
        if value is None or value[0] != on_hand or value[2] != in_transit:
            return False
    return True


async def differences(cluster: Cluster, expected: dict[Key, list[int]]) -> list[str]:
    wrong = []
    for (sku, store), want in expected.items():
        value = await cluster.position(sku, store)
        got = [value[0], value[2]] if value else None
        if got != want:
            wrong.append(f"{sku}@{store}: {got} != {want}")
    return wrong


async def converge(cluster: Cluster, expected: dict[Key, list[int]], timeout: float) -> None:
    try:
        await eventually(lambda: matches(cluster, expected), timeout=timeout, what="expected state")
    except AssertionError:
        await cluster.dump_tasks()
        wrong = await differences(cluster, expected)
        raise AssertionError(f"{len(wrong)} positions differ, e.g. {wrong[:5]}") from None


@chaos
@pytest.mark.parametrize(("partitions", "store", "wipe"), [
    (1, "memory", True),
    (8, "memory", True),
    (8, "rocksdb", False),
])
async def test_kill_mid_stream_and_restart(own_broker: str, redis_url: str, tmp_path: Path,
                                           partitions: int, store: str, wipe: bool) -> None:
    cluster = Cluster(own_broker, redis_url, tmp_path, partitions=partitions, store=store)
    await ensure_topics(cluster.settings)
    messages, expected = workload(random.Random(partitions), 3000)
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        half = len(messages) // 2
        await cluster.send_many(messages[:half])
        first = next(iter(expected))
        await eventually(lambda: cluster.position(*first), timeout=30, what="some progress")
        cluster.kill("w0")  # SIGKILL, mid-stream: no commit, no flush, no leave-group
        killed = time.monotonic()
        cluster.start_worker("w0", wipe=wipe)
        await cluster.send_many(messages[half:])
        await converge(cluster, expected, timeout=120)
        converged = time.monotonic() - killed
        assert "ConsistencyError" not in cluster.log("w0")
        postings = await erp_agrees(cluster, expected)

        # The changelog alone rebuilds the same state, and the cache is re-written from it.
        cluster.stop("w0")
        for sku in {sku for sku, _ in expected}:
            await cluster.cache.delete(topics.position_key(sku))
        started = time.monotonic()
        cluster.start_worker("w1", wipe=True)
        await converge(cluster, expected, timeout=120)
        rebuilt = time.monotonic() - started
        report(f"kill -9 mid-stream, restart ({partitions} partitions, {store}, {'wiped' if wipe else 'kept'})",
               events=len(messages), converged_after_kill_s=round(converged, 1),
               rebuilt_from_changelog_s=round(rebuilt, 1), positions=len(expected), erp_posting_ids=postings)
    finally:
        await cluster.close()


@chaos
async def test_two_workers_one_killed_the_other_takes_over_then_shares_again(own_broker: str, redis_url: str,
                                                                            tmp_path: Path) -> None:
    """Two workers share 8 partitions; one is killed mid-stream, the other takes its partitions over
    from the changelog; the killed one comes back on an empty disk and the group rebalances again.
    Every rebalance is a moment Faust drops fetched messages (streams/gate.py): state must stay exact."""
    cluster = Cluster(own_broker, redis_url, tmp_path, partitions=8)
    await ensure_topics(cluster.settings)
    messages, expected = workload(random.Random(2), 3000)
    third = len(messages) // 3
    try:
        cluster.start_worker("w0")
        cluster.start_worker("w1")
        await ready(cluster)
        await eventually(lambda: _both_own_partitions(cluster), timeout=60, what="both workers own partitions")
        await cluster.send_many(messages[:third])
        first = next(iter(expected))
        await eventually(lambda: cluster.position(*first), timeout=30, what="some progress")
        cluster.kill("w1")  # mid-stream; w0 takes every partition once w1's session expires
        killed = time.monotonic()
        await cluster.send_many(messages[third:2 * third])
        cluster.start_worker("w1", wipe=True)
        await cluster.send_many(messages[2 * third:])
        await converge(cluster, expected, timeout=120)
        converged = time.monotonic() - killed
        for name in ("w0", "w1"):
            assert "ConsistencyError" not in cluster.log(name)
        postings = await erp_agrees(cluster, expected)
        report("two workers, one killed, taken over, added back", events=len(messages),
               converged_after_kill_s=round(converged, 1), positions=len(expected), erp_posting_ids=postings)
    finally:
        await cluster.close()


async def _both_own_partitions(cluster: Cluster) -> bool:
    return all("partition" in cluster.log(name) and "loaded" in cluster.log(name) for name in ("w0", "w1"))


async def test_resumes_where_the_state_ends_not_where_the_group_committed(own_broker: str, redis_url: str,
                                                                          tmp_path: Path) -> None:
    """Offsets committed past what the state holds (an operator's reset, a commit racing a crash) must not
    lose events: the restarted worker seeks back to the offsets its changelog names."""
    async with _one_worker(own_broker, redis_url, tmp_path) as cluster:
        store, sku = ref("S"), ref("SKU")
        await cluster.send_many([(topics.RECEIPTS, receipt(store, (sku, 1)), None) for _ in range(20)])
        await eventually(lambda: _on_hand_is(cluster, sku, store, 20), timeout=60, what="first receipts")
        cluster.stop("w0")

        ends = [await cluster.send(topics.RECEIPTS, receipt(store, (sku, 1))) for _ in range(30)]
        topic, partition, last = ends[-1]
        await commit_group_offsets({(topic, partition): last + 1}, cluster.settings.bootstrap_servers)

        cluster.start_worker("w0", wipe=True)
        await eventually(lambda: _on_hand_is(cluster, sku, store, 50), timeout=60, what="the skipped receipts")


async def test_the_group_commits_each_input_as_far_as_the_flushed_state_covers_it(own_broker: str, redis_url: str,
                                                                                  tmp_path: Path) -> None:
    """The engine acknowledges no record one by one (its records come as fetched, ``streams.intake``): the
    consumer group's offsets are what the flushed state covers, up to the end of what was applied, and an
    operator's lag tooling reads them as with any consumer."""
    async with _one_worker(own_broker, redis_url, tmp_path) as cluster:
        store, sku = ref("S"), ref("SKU")
        sent = [await cluster.send(topics.RECEIPTS, receipt(store, (sku, 1))) for _ in range(20)]
        await eventually(lambda: _on_hand_is(cluster, sku, store, 20), timeout=60, what="the receipts")
        topic, partition, last = sent[-1]
        reader = AIOKafkaConsumer(bootstrap_servers=cluster.settings.bootstrap_servers, group_id=topics.APP_ID,
                                  enable_auto_commit=False)  # never subscribes: reads the group's offsets only
        await reader.start()
        try:
            async def committed() -> bool:
                return await reader.committed(TopicPartition(topic, partition)) == last + 1

            await eventually(committed, timeout=30, what=f"{topic}[{partition}] committed at {last + 1}")
        finally:
            await reader.stop()


@asynccontextmanager
async def _one_worker(own_broker: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster of two partitions with worker ``w0`` started and ready; closed on the way out."""
    cluster = Cluster(own_broker, redis_url, tmp_path, partitions=2)
    await ensure_topics(cluster.settings)
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        yield cluster
    finally:
        await cluster.close()


async def _on_hand_is(cluster: Cluster, sku: str, store: str, on_hand: int) -> bool:
    value = await cluster.position(sku, store)
    return value is not None and value[0] == on_hand


async def test_a_restarted_worker_is_not_ready_until_its_positions_are_served(own_broker: str, redis_url: str,
                                                                           tmp_path: Path) -> None:
    """``/readyz`` says ready only once the worker has loaded every partition it was assigned and written
    its positions back to the cache: a worker restarted on an empty disk, with the cache emptied, must
    not be reported ready while the API would still answer from nothing. Whenever ``/readyz`` answers
    200, every position is served as the arithmetic of the receipts."""
    own_cache = urlunsplit(urlsplit(redis_url)._replace(path="/11"))  # no heartbeat of another test's workers
    cluster = Cluster(own_broker, own_cache, tmp_path, partitions=4)
    await ensure_topics(cluster.settings)
    await cluster.cache.flushdb()
    stores, skus = [ref("S") for _ in range(40)], [ref("SKU") for _ in range(600)]  # 24k positions: a load of seconds
    expected = {sku: {store: 1 + (i + j) % 7 for j, store in enumerate(stores)} for i, sku in enumerate(skus)}
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        await cluster.send_many([(topics.RECEIPTS, receipt(store, *[(sku, expected[sku][store]) for sku in skus]),
                                  None) for store in stores])
        await converge(cluster, {(sku, store): [on_hand, 0] for sku, by_store in expected.items()
                                 for store, on_hand in by_store.items()}, timeout=120)
        cluster.stop("w0")
        await cluster.cache.flushdb()  # the positions (and the stopped worker's heartbeat) gone from the cache

        cluster.start_worker("w1", wipe=True)
        async with serve(settings_for(own_broker, own_cache, partitions="4")) as client:
            answers: list[str] = []  # what /readyz said until it said ready

            async def ready_now() -> bool:
                response = await client.get("/readyz")
                body = await response.json()
                answers.append(body.get("detail", body["status"]))
                return response.status == 200

            await eventually(ready_now, timeout=120, what="/readyz 200")
            wrong = [sku for sku in skus if await _served(client, sku) != expected[sku]]
        assert not wrong, f"ready with {len(wrong)} of {len(skus)} SKUs not served right; /readyz said {answers}"
        index = await cluster.cache.zrange(topics.location_index_key(stores[0]), 0, -1, withscores=True)
        assert {sku.decode(): score for sku, score in index} == {sku: expected[sku][stores[0]] for sku in skus}
        beats = [orjson.loads(await cluster.cache.get(key))
                 async for key in cluster.cache.scan_iter(match=topics.HEARTBEAT_PREFIX + "*")]
        assert [beat["loading"] for beat in beats] == [[]]
    finally:
        await cluster.close()


async def _served(client: Any, sku: str) -> dict[str, int] | None:
    response = await client.get(f"/v1/availability/{sku}", headers=bearer(READER))
    if response.status != 200:
        return None
    return {entry["location_id"]: entry["on_hand"] for entry in (await response.json())["locations"]}


class AsFaust(RoundRobinPartitionAssignor):
    name = "faust"  # the group's protocol: a member must speak it to join


async def commit_group_offsets(offsets: dict[tuple[str, int], int], bootstrap: list[str]) -> None:
    """Commit offsets for the workers' consumer group as a member of it, as an operator's reset does."""
    partitions = {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}
    consumer = AIOKafkaConsumer(*{tp.topic for tp in partitions}, bootstrap_servers=bootstrap,
                                group_id=topics.APP_ID, enable_auto_commit=False, session_timeout_ms=6_000,
                                heartbeat_interval_ms=500, partition_assignment_strategy=(AsFaust,))
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not set(partitions) <= consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
        await consumer.commit(partitions)
    finally:
        await consumer.stop()
