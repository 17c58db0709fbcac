"""The change feed on the real broker and cache: one record per crossing in a burst, the ids of the
events behind it, low-stock levels from the channels file, and no crossing lost to a kill -9.

Expected records are the rules of ``availability/feed.py`` worked by hand for the quantities sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from availability import topics
from tests.builders import receipt, ref, sale

from .cluster import Cluster, eventually
from .conftest import ready, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: ecom holds 1 unit back at every location and calls fewer than 3 left "low"
CHANNELS = {"channels": {"ecom": {"locations": "all", "default_buffer": 1, "low_stock": 3}}}


@pytest.fixture(scope="module")
async def feed(module_broker: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
               ) -> AsyncIterator[Cluster]:
    async with with_channels(module_broker, redis_url, tmp_path_factory.mktemp("feed")) as cluster:
        yield cluster


@asynccontextmanager
async def with_channels(broker_url: str, redis_url: str, root: Path) -> AsyncIterator[Cluster]:
    """One worker (4 partitions) reading :data:`CHANNELS`, ready; stopped on the way out."""
    (root / "channels.json").write_text(json.dumps(CHANNELS))
    env = {"ATS_CHANNELS_FILE": str(root / "channels.json")}
    async with running(Cluster(broker_url, redis_url, root, partitions=4, env=env)) as cluster:
        yield cluster


async def changes(cluster: Cluster, sku: str, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """The SKU's position records (its channels' network records, ``location_id`` null, are test_network's)."""
    return await cluster.records(topics.AVAILABILITY, lambda r: r["sku"] == sku and r["location_id"] is not None,
                                 until, timeout=timeout)


def unique(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In the order sent, each id once; an id sent twice must carry the same record both times."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in found:
        assert by_id.setdefault(record["change_id"], record) == record
    return list(by_id.values())


def summary(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["channel"], r["kind"], r["previous_ats"], r["ats"]) for r in unique(found)]


async def settled(cluster: Cluster, store: str) -> None:
    """Everything the worker will say about ``store`` so far has been sent: a receipt of a fresh SKU there
    crosses too, in the same flush or a later one, and a flush's records are delivered before the next's."""
    marker = ref("SKU")
    await cluster.send(topics.RECEIPTS, receipt(store, (marker, 1)))
    await changes(cluster, marker, lambda f: len(f) >= 1)


async def test_a_burst_of_sales_is_one_record_per_crossing_and_a_receipt_one_back(feed: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await feed.send(topics.RECEIPTS, receipt(store, (sku, 12)))
    first = await changes(feed, sku, lambda f: len(f) >= 2)
    assert sorted(summary(first), key=str) == sorted([(None, "back_in_stock", 0, 12), ("ecom", "low_stock_recovered",
                                                                                      0, 11)], key=str)

    sales = [sale(store, (sku, 1)) for _ in range(12)]
    await feed.send_many([(topics.SALES, event, None) for event in sales])
    await eventually(lambda: _on_hand_is(feed, sku, store, 0), what="the burst applied")
    await settled(feed, store)
    burst = unique(await changes(feed, sku, lambda f: len(f) >= 4))[2:]
    # One record per crossing, from the answer at the flush before it: 12 to 0 (ecom 11 to 0) when the burst
    # fell between two flushes; a batch starts with what has arrived, so the partition's flush may also fall
    # after the first sales (12 -> 11 crosses nothing), or after ecom crossed and before the last unit went.
    crossed = {(record["channel"], record["kind"]): record for record in burst}
    assert len(burst) == 2
    assert crossed.keys() == {(None, "out_of_stock"), ("ecom", "low_stock")}
    out, low = crossed[(None, "out_of_stock")], crossed[("ecom", "low_stock")]
    assert 1 <= out["previous_ats"] <= 12
    assert out["ats"] == 0
    assert 3 <= low["previous_ats"] <= 11
    assert 0 <= low["ats"] < 3
    ids = [event["event_id"] for event in sales]
    assert out["event_ids"][-1] == ids[-1]  # the sale that took the last unit
    for record in burst:
        assert set(record["event_ids"]) <= set(ids)
        assert (record["sku"], record["location_id"]) == (sku, store)
        assert record["threshold"] == (1 if record["channel"] is None else 3)

    restock = receipt(store, (sku, 2))
    await feed.send(topics.RECEIPTS, restock)
    await settled(feed, store)
    found = unique(await changes(feed, sku, lambda f: len(unique(f)) >= 5))
    # 2 units: back in stock, but ecom (1 held back) sees 1 < 3: still low, no further ecom record
    assert summary(found[4:]) == [(None, "back_in_stock", 0, 2)]
    assert found[4]["event_ids"] == [restock["event_id"]]


async def _on_hand_is(cluster: Cluster, sku: str, store: str, value: int) -> bool:
    position = await cluster.position(sku, store)
    return position is not None and position[0] == value


async def test_no_crossing_is_lost_to_a_kill_during_bursts(feed: Cluster) -> None:
    """Bursts up and down, the worker killed with SIGKILL in the middle and restarted on an empty data dir:
    deduplicated by id, the records of each position alternate and the last one agrees with its ATS."""
    store, skus = ref("S"), [ref("SKU") for _ in range(6)]
    await kill_during_bursts(feed, (store,), skus, lambda: settled(feed, store))
    await settled(feed, store)
    for sku in skus:
        found = unique(await changes(feed, sku, lambda f: any(r["kind"] == "out_of_stock" for r in f)))
        in_stock = False
        for record in (r for r in found if r["channel"] is None):
            assert (record["previous_ats"] > 0) == in_stock, found
            in_stock = record["ats"] > 0
            assert record["kind"] == ("back_in_stock" if in_stock else "out_of_stock")
        assert found, f"{sku}: nothing said"
        assert not in_stock, found  # the last word: out of stock, as the cache says


async def kill_during_bursts(cluster: Cluster, stores: tuple[str, ...], skus: list[str],
                             said_in_stock: Callable[[], Awaitable[Any]]) -> None:
    """Round 0 receives 3 of every SKU at every store (then ``said_in_stock``: the feed has said so); rounds
    1-4 alternate selling and receiving 3 and the worker is killed with SIGKILL as they go in; rounds 5-7 go
    in while it is down; restarted on an empty data dir, it applies everything (on_hand 0 everywhere)."""

    def burst(rounds: range) -> list[tuple[str, dict[str, Any], None]]:  # even rounds receive 3, odd sell 3
        return [(topics.RECEIPTS, receipt(store, (sku, 3)), None) if r % 2 == 0 else
                (topics.SALES, sale(store, (sku, 3)), None) for r in rounds for sku in skus for store in stores]

    await cluster.send_many(burst(range(1)))
    await said_in_stock()
    await cluster.send_many(burst(range(1, 5)))
    cluster.kill()  # while it applies, flushes and sends
    await cluster.send_many(burst(range(5, 8)))
    cluster.start_worker(wipe=True)
    await ready(cluster)
    for sku in skus:
        for store in stores:
            await eventually(lambda sku=sku, store=store: _on_hand_is(cluster, sku, store, 0), what=f"{sku} applied")
