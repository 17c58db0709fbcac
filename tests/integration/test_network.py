"""A channel's network ATS crossings on the real broker and cache: sales at two locations of a channel,
owned by different partitions, empty its network once; a receipt brings it back once; a worker killed with
SIGKILL and restarted on an empty data dir loses no crossing and contradicts none.

Expected records are the rules of ``availability/network.py`` worked by hand for the quantities sent
(ecom holds 1 unit back at every location and calls fewer than 3 left in its network "low").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from availability import topics
from availability.network import sku_partition
from tests.builders import receipt, ref, sale

from .cluster import Cluster, eventually
from .conftest import locations_on_distinct_partitions
from .test_feed import kill_during_bursts, unique, with_channels

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
PARTITIONS = 4  # with_channels's worker
two_stores = locations_on_distinct_partitions(PARTITIONS)


@pytest.fixture(scope="module")
async def network(module_broker: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Cluster]:
    async with with_channels(module_broker, redis_url, tmp_path_factory.mktemp("network")) as cluster:
        yield cluster


def sku_beside(sku: str) -> str:
    """A fresh SKU summed by the same partition as ``sku`` (its ats.network records come after sku's)."""
    while True:
        other = ref("SKU")
        if sku_partition(other, PARTITIONS) == sku_partition(sku, PARTITIONS):
            return other


async def network_changes(cluster: Cluster, sku: str, until: Any, timeout: float = 90) -> list[dict[str, Any]]:
    return await cluster.records(topics.AVAILABILITY, lambda r: r["sku"] == sku and r["location_id"] is None, until,
                                 timeout=timeout)


def summary(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(((r["channel"], r["kind"], r["previous_ats"], r["ats"], r["threshold"]) for r in unique(found)),
                  key=str)


def crossed(found: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """``kind`` → ``(previous_ats, ats)`` of ecom's records in ``found``, each kind once. The owners of two
    stores flush at their own turns of the interval, so a change at both may reach the summing partition in
    one of its flushes or in two: the sum crosses in one step or two (0 -> 3, or 0 -> 2 -> 3), with one
    record of each kind either way."""
    records = unique(found)
    kinds = [record["kind"] for record in records]
    assert len(kinds) == len(set(kinds)), records
    assert {record["channel"] for record in records} == {"ecom"}, records
    return {record["kind"]: (record["previous_ats"], record["ats"]) for record in records}


async def settled(cluster: Cluster, sku: str, stores: tuple[str, ...]) -> None:
    """Everything the worker will say about ``sku``'s network so far has been sent: a receipt of a fresh SKU
    summed by the same partition, at the same stores, crosses too, in the same flush or a later one."""
    marker = sku_beside(sku)
    for store in stores:
        await cluster.send(topics.RECEIPTS, receipt(store, (marker, 2)))
    await network_changes(cluster, marker, lambda f: len(f) >= 1)


async def on_hand(cluster: Cluster, sku: str, store: str, value: int) -> bool:
    position = await cluster.position(sku, store)
    return position is not None and position[0] == value


async def test_sales_at_two_locations_empty_the_network_once_and_a_receipt_brings_it_back(network: Cluster) -> None:
    (s1, s2), sku = two_stores(), ref("SKU")
    await network.send_many([(topics.RECEIPTS, receipt(s1, (sku, 3)), None),
                             (topics.RECEIPTS, receipt(s2, (sku, 2)), None)])
    first = await network_changes(network, sku, lambda f: len(unique(f)) >= 2)
    # ecom: (3 - 1) + (2 - 1) = 3, not below 3: back in stock from 0, recovered to 3 (in one step or two)
    opening = crossed(first)
    assert set(opening) == {"network_back_in_stock", "network_low_stock_recovered"}
    assert opening["network_back_in_stock"][0] == 0
    assert opening["network_low_stock_recovered"][1] == 3

    sales = [*(sale(s1, (sku, 1)) for _ in range(3)), sale(s2, (sku, 1)), sale(s2, (sku, 1))]
    await network.send_many([(topics.SALES, event, None) for event in sales])
    await eventually(lambda: on_hand(network, sku, s1, 0), what="the sales at the first store applied")
    await eventually(lambda: on_hand(network, sku, s2, 0), what="the sales at the second store applied")
    await settled(network, sku, (s1, s2))
    found = unique(await network_changes(network, sku, lambda f: len(unique(f)) >= 4))
    burst = found[2:]
    emptied = crossed(burst)  # one of each kind, not one a sale
    assert set(emptied) == {"network_out_of_stock", "network_low_stock"}
    assert emptied["network_low_stock"][0] == 3
    assert emptied["network_out_of_stock"][1] == 0
    ids = {event["event_id"] for event in sales}
    for record in burst:
        assert record["event_ids"], record
        assert set(record["event_ids"]) <= ids
        assert record["location_id"] is None

    restock = receipt(s2, (sku, 2))
    await network.send(topics.RECEIPTS, restock)
    await settled(network, sku, (s1, s2))
    found = unique(await network_changes(network, sku, lambda f: len(unique(f)) >= 5))
    # 2 units at s2: ecom's network is 1 again, still below 3: back in stock, no recovery
    assert summary(found[4:]) == [("ecom", "network_back_in_stock", 0, 1, 1)]
    assert found[4]["event_ids"] == [restock["event_id"]]


async def test_no_network_crossing_is_lost_to_a_kill_during_bursts(network: Cluster) -> None:
    """Bursts up and down at two stores, the worker killed with SIGKILL in the middle and restarted on an
    empty data dir: deduplicated by id, each SKU's network records alternate per threshold and the last
    one agrees with the stock left (none)."""
    stores, skus = two_stores(), [ref("SKU") for _ in range(6)]

    async def said_in_stock() -> None:
        for sku in skus:
            await network_changes(network, sku, lambda f: len(f) >= 1)

    await kill_during_bursts(network, stores, skus, said_in_stock)
    for sku in skus:
        await settled(network, sku, stores)
        found = unique(await network_changes(network, sku, lambda f: any(
            r["kind"] == "network_out_of_stock" for r in f)))
        for threshold in (1, 3):
            below = True
            for record in (r for r in found if r["threshold"] == threshold):
                assert record["channel"] == "ecom", found
                assert (record["previous_ats"] < threshold) == below, found
                below = record["ats"] < threshold
            assert below, found  # the last word: nothing left, as the cache says
