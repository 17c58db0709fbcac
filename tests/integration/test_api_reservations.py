"""Reservations through the API, decided by a real worker: races, all-or-nothing, retries, release
and expiry. Expected numbers are the contract worked by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from availability import topics
from tests.builders import lines, receipt, ref, sale

from .apiserver import INGESTER, READER, RESERVER, bearer, serve, settings_for
from .cluster import Cluster, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def client(engine: Cluster) -> AsyncIterator[Client]:
    async with serve(settings_for(engine.broker_url, engine.redis_url, hold_timeout_ms="20000")) as client:
        yield client


async def stock(client: Client, location: str, *pairs: tuple[str, int], on_hand: int | None = None) -> None:
    """Receive ``pairs`` at ``location`` and wait until the cache shows them (``on_hand`` if given)."""
    response = await client.post("/v1/events", json=receipt(location, *pairs), headers=bearer(INGESTER))
    assert response.status == 202

    async def arrived() -> bool:
        for sku, qty in pairs:
            response = await client.get(f"/v1/availability/{sku}", params={"location": location},
                                        headers=bearer(READER))
            if response.status == 503:  # a partition not yet written whole (a worker just started): retry
                return False
            if [item["on_hand"] for item in (await response.json())["locations"]] != [on_hand or qty]:
                return False
        return True

    await eventually(arrived, timeout=30, what="stock in the cache")


async def ats(client: Client, sku: str, location: str) -> tuple[int, int]:
    """(ats, reserved) at the location."""
    response = await client.get(f"/v1/availability/{sku}", params={"location": location}, headers=bearer(READER))
    (item,) = (await response.json())["locations"]
    return item["ats"], item["reserved"]


async def hold(client: Client, location: str, reservation_id: str, *pairs: tuple[str, int], **extra: Any,
               ) -> tuple[int, dict[str, Any]]:
    body = {"reservation_id": reservation_id, "location_id": location, "lines": lines(*pairs), **extra}
    response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
    return response.status, await response.json()


async def hold_until_decided(client: Client, location: str, reservation_id: str, *pairs: tuple[str, int],
                             ) -> tuple[int, dict[str, Any]]:
    """A client's hold: on a 503/504 (the decision did not come in time: a loaded machine) it retries with
    the same reservation id, which the contract makes idempotent: the retry meets the original outcome."""
    for _ in range(10):
        status, body = await hold(client, location, reservation_id, *pairs)
        if status not in (503, 504):
            return status, body
        await asyncio.sleep(float(body.get("retry_after", 0.5)) if isinstance(body, dict) else 0.5)
    return status, body


async def test_sixty_concurrent_holds_race_for_twenty_five_units(client: Client, engine: Cluster) -> None:
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 25))
    ids = [ref("R") for _ in range(60)]
    racing = asyncio.gather(*(hold_until_decided(client, store, rid, (sku, 1)) for rid in ids))
    subscribers = set()
    while not racing.done():  # every waiting request shares the app's one subscription
        subscribers.add(dict(await engine.cache.pubsub_numsub(topics.DECISIONS_CHANNEL))[
            topics.DECISIONS_CHANNEL.encode()])
        await asyncio.sleep(0.01)
    results = await racing
    assert subscribers == {1}
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 25
    assert statuses.count(409) == 35
    for status, body in results:
        assert body["status"] == ("held" if status == 201 else "rejected")
        if status == 201:
            assert body["expires_at"].endswith("Z")
        else:
            assert body["shortfalls"] == [{"sku": sku, "requested": 1, "available": 0}]
    assert await ats(client, sku, store) == (0, 25)


async def test_a_multi_line_hold_with_one_short_line_takes_nothing(client: Client) -> None:
    store, a, b = ref("S"), ref("SKU"), ref("SKU")
    await stock(client, store, (a, 5), (b, 1))
    status, body = await hold(client, store, ref("R"), (a, 2), (b, 3))
    assert status == 409
    assert body["status"] == "rejected"
    assert body["shortfalls"] == [{"sku": b, "requested": 3, "available": 1}]
    assert await ats(client, a, store) == (5, 0)
    assert await ats(client, b, store) == (1, 0)


async def test_retries_return_the_original_outcome(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 3))
    rid = ref("R")
    first = await hold(client, store, rid, (sku, 2))
    assert first[0] == 201
    again = await asyncio.gather(*(hold(client, store, rid, (sku, 2)) for _ in range(3)))
    assert all(result == first for result in again)
    assert await ats(client, sku, store) == (1, 2)  # taken once
    rejected_id = ref("R")
    rejected = await hold(client, store, rejected_id, (sku, 5))
    assert rejected[0] == 409
    await stock(client, store, (sku, 100), on_hand=103)  # now it would fit; the retry still gets the original answer
    assert await hold(client, store, rejected_id, (sku, 5)) == rejected


async def test_one_reservation_id_is_one_hold_at_one_location(client: Client) -> None:
    first, second, sku, rid = ref("S"), ref("S"), ref("SKU"), ref("R")
    await stock(client, first, (sku, 5))
    await stock(client, second, (sku, 5))
    outcomes = await asyncio.gather(hold(client, first, rid, (sku, 1)), hold(client, second, rid, (sku, 1)))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [201, 422]
    conflict = next(body for status, body in outcomes if status == 422)
    assert conflict["errors"][0]["field"] == "reservation_id"
    assert "is in use at location" in conflict["detail"]
    held_at = next(body["location_id"] for status, body in outcomes if status == 201)
    other = second if held_at == first else first
    assert await ats(client, sku, held_at) == (4, 1)
    assert await ats(client, sku, other) == (5, 0)


async def test_status_and_release_free_stock(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 4))
    rid = ref("R")
    assert (await hold(client, store, rid, (sku, 3), ttl_seconds=600, channel="pos"))[0] == 201
    response = await client.get(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["location_id"], body["channel"]) == ("held", store, "pos")
    assert body["remaining"] == [{"sku": sku, "qty": 3}]
    assert await ats(client, sku, store) == (1, 3)
    response = await client.delete(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
    assert response.status == 200
    assert (await response.json())["status"] == "released"
    assert await ats(client, sku, store) == (4, 0)
    again = await client.delete(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
    assert (again.status, (await again.json())["status"]) == (200, "released")


async def test_a_sale_consumes_the_hold_then_release_frees_nothing(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 5))
    rid = ref("R")
    assert (await hold(client, store, rid, (sku, 2)))[0] == 201
    paid = sale(store, (sku, 2), reservation_id=rid, channel="pos")
    assert (await client.post("/v1/events", json=paid, headers=bearer(INGESTER))).status == 202

    async def consumed() -> bool:
        response = await client.get(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
        return bool((await response.json())["status"] == "consumed")

    await eventually(consumed, timeout=30, what="hold consumed")
    assert await ats(client, sku, store) == (3, 0)
    response = await client.delete(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
    assert (response.status, (await response.json())["status"]) == (200, "consumed")
    assert await ats(client, sku, store) == (3, 0)


async def test_an_unreleased_hold_expires_and_frees_stock(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 2))
    rid = ref("R")
    status, _body = await hold(client, store, rid, (sku, 2), ttl_seconds=1)
    assert status == 201
    assert await ats(client, sku, store) == (0, 2)

    async def expired() -> bool:
        response = await client.get(f"/v1/reservations/{rid}", headers=bearer(RESERVER))
        return bool((await response.json())["status"] == "expired")

    await eventually(expired, timeout=30, what="hold expired")
    assert await ats(client, sku, store) == (2, 0)
    # the freed stock can be held again
    assert (await hold(client, store, ref("R"), (sku, 2)))[0] == 201


async def test_unknown_reservations_and_bad_requests(client: Client) -> None:
    missing = ref("R")
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v1/reservations/{missing}", headers=bearer(RESERVER))
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        assert missing in (await response.json())["detail"]
    store, sku = ref("S"), ref("SKU")
    cases: list[dict[str, Any]] = [
        {"reservation_id": ref("R"), "location_id": store, "lines": []},
        {"reservation_id": ref("R"), "location_id": store, "lines": lines((sku, 1), (sku, 2))},
        {"reservation_id": ref("R"), "location_id": store, "lines": lines((sku, 1)), "ttl_seconds": 0},
        {"reservation_id": ref("R"), "location_id": "a b", "lines": lines((sku, 1))},
        {"reservation_id": ref("R"), "location_id": store, "lines": [{"sku": sku, "qty": "1"}]},
        {"location_id": store, "lines": lines((sku, 1))},
    ]
    for body in cases:
        response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
        assert response.status == 422, body
        assert (await response.json())["errors"], body
    response = await client.get("/v1/reservations/" + "x" * 129, headers=bearer(RESERVER))
    assert response.status == 422


async def test_holds_are_decided_after_the_subscription_is_cut(client: Client, engine: Cluster) -> None:
    """The cache drops the API's subscription (a failover, a restart): the listener resubscribes."""
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 2))
    killed = await engine.cache.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 1
    assert (await hold(client, store, ref("R"), (sku, 1)))[0] == 201
    assert (await hold(client, store, ref("R"), (sku, 2)))[0] == 409


async def test_any_reservation_id_round_trips_through_its_location(client: Client) -> None:
    """An id may hold any character but control characters (spaces, slashes, non-ASCII, `*`, `{`); the
    Location header carries it percent-encoded and leads back to it."""
    store, sku = ref("S"), ref("SKU")
    await stock(client, store, (sku, 3))
    for control in ("\x1f", "\n"):  # a newline would forge a log line and reach a cache key
        status, body = await hold(client, store, ref("R") + control, (sku, 1))
        assert status == 422
        assert "control characters" in body["detail"]
    for rid in (ref("R") + " x*?", ref("R") + "/ü:%"):  # ("{" cannot be routed by aiohttp: see the README)
        status, body = await hold(client, store, rid, (sku, 1))
        assert (status, body["reservation_id"]) == (201, rid)
        response = await client.get(f"/v1/reservations/{quote(rid, safe='')}", headers=bearer(RESERVER))
        assert response.status == 200
        assert (await response.json())["reservation_id"] == rid
