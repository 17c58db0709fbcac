"""Availability reads and event ingest against the real app, cache, broker and a real worker.

Events go in through ``POST /v1/events``; answers come back through the read routes. Expected
numbers are the contract's arithmetic worked by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.builders import policy, receipt, ref, sale, transfer

from .apiserver import INGESTER, READER, bearer, serve, settings_for
from .cluster import Cluster, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def client(engine: Cluster) -> AsyncIterator[Client]:
    async with serve(settings_for(engine.broker_url, engine.redis_url)) as client:
        yield client


async def post_events(client: Client, *events: dict[str, Any]) -> list[str]:
    body: Any = events[0] if len(events) == 1 else {"events": list(events)}
    response = await client.post("/v1/events", json=body, headers=bearer(INGESTER))
    assert response.status == 202, await response.text()
    return (await response.json())["accepted"]


async def read(client: Client, sku: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/availability/{sku}", params=params, headers=bearer(READER))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def settled(client: Client, sku: str, want_network: int, **params: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await read(client, sku, **params)
        return body if body["network_ats"] == want_network else None

    return await eventually(check, timeout=30, what=f"{sku} network_ats == {want_network}")


async def test_pdp_answer_after_ingest(client: Client) -> None:
    a, b, sku = ref("S"), ref("S"), ref("SKU")
    accepted = await post_events(client, receipt(a, (sku, 10)), receipt(b, (sku, 4)), policy(a, (sku, 2)))
    assert len(accepted) == 3
    body = await settled(client, sku, 12)  # (10 - 2) + 4
    assert body["sku"] == sku
    assert body["as_of"].endswith("Z")
    by_location = {item["location_id"]: item for item in body["locations"]}
    assert set(by_location) == {a, b}
    assert [item["location_id"] for item in body["locations"]] == sorted([a, b])
    assert {k: v for k, v in by_location[a].items() if k != "updated_at"} == {
        "location_id": a, "ats": 8, "on_hand": 10, "reserved": 0, "in_transit": 0, "damaged": 0, "safety_stock": 2}
    assert by_location[a]["updated_at"].endswith("Z")
    only_b = await read(client, sku, location=b)
    assert [item["location_id"] for item in only_b["locations"]] == [b]
    assert only_b["network_ats"] == 4


async def test_repeated_location_parameter_keeps_request_order(client: Client) -> None:
    a, b, sku = ref("S"), ref("S"), ref("SKU")
    await post_events(client, receipt(a, (sku, 1)), receipt(b, (sku, 2)))
    await settled(client, sku, 3)
    response = await client.get(f"/v1/availability/{sku}?location={b}&location=nowhere&location={a}&location={b}",
                                headers=bearer(READER))
    body = await response.json()
    assert [item["location_id"] for item in body["locations"]] == [b, a]
    assert body["network_ats"] == 3


async def test_unknown_sku_is_an_empty_answer(client: Client) -> None:
    sku = ref("never")
    body = await read(client, sku)
    assert (body["sku"], body["network_ats"], body["locations"]) == (sku, 0, [])
    body = await read(client, sku, location="nowhere")
    assert (body["network_ats"], body["locations"]) == (0, [])


async def test_channel_views(client: Client) -> None:
    # ecom: all locations, buffer 1 except DC-buffered 5; stores: S-listed-1 and S-listed-2 (buffer 2)
    sku = ref("SKU")
    other = ref("S")
    await post_events(client, receipt("DC-buffered", (sku, 7)), receipt("S-listed-1", (sku, 3)),
                      receipt("S-listed-2", (sku, 1)), receipt(other, (sku, 1)))
    await settled(client, sku, 12)
    ecom = await read(client, sku, channel="ecom")
    assert ecom["network_ats"] == (7 - 5) + (3 - 1) + (1 - 1) + (1 - 1)
    assert len(ecom["locations"]) == 4
    stores = await read(client, sku, channel="stores")
    assert stores["network_ats"] == 3 + max(0, 1 - 2)
    assert [item["location_id"] for item in stores["locations"]] == ["S-listed-1", "S-listed-2"]
    one = await read(client, sku, channel="stores", location=other)
    assert (one["network_ats"], one["locations"]) == (0, [])
    response = await client.get(f"/v1/availability/{sku}", params={"channel": "fax"}, headers=bearer(READER))
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    assert "fax" in (await response.json())["detail"]


async def test_bulk_query_answers_in_request_order(client: Client) -> None:
    a, b = ref("S"), ref("S")
    skus = [ref("SKU") for _ in range(5)]
    await post_events(client, *[receipt(a, (sku, i + 1)) for i, sku in enumerate(skus)], receipt(b, (skus[0], 10)))
    await settled(client, skus[0], 11)
    await settled(client, skus[4], 5)
    asked = [skus[3], "unknown-sku", skus[0], skus[3]]
    response = await client.post("/v1/availability/query", json={"skus": asked}, headers=bearer(READER))
    assert response.status == 200
    items = (await response.json())["items"]
    assert [item["sku"] for item in items] == asked
    assert [item["network_ats"] for item in items] == [4, 0, 11, 4]
    response = await client.post("/v1/availability/query", json={"skus": [skus[0]], "locations": [b, "x"]},
                                 headers=bearer(READER))
    (item,) = (await response.json())["items"]
    assert [(loc["location_id"], loc["ats"]) for loc in item["locations"]] == [(b, 10)]
    response = await client.post("/v1/availability/query", json={"skus": [skus[0]], "channel": "ecom"},
                                 headers=bearer(READER))
    assert (await response.json())["items"][0]["network_ats"] == (10 - 1) + (1 - 1)


async def test_bulk_query_of_a_thousand_skus(client: Client) -> None:
    store = ref("S")
    skus = [ref("SKU") for _ in range(1000)]
    await post_events(client, receipt(store, *[(sku, 2) for sku in skus[:500]]),
                      receipt(store, *[(sku, 3) for sku in skus[500:]]))
    await settled(client, skus[-1], 3)
    await settled(client, skus[0], 2)
    response = await client.post("/v1/availability/query", json={"skus": skus}, headers=bearer(READER))
    items = (await response.json())["items"]
    assert sum(item["network_ats"] for item in items) == 500 * 2 + 500 * 3
    response = await client.post("/v1/availability/query", json={"skus": [*skus, "one-more"]},
                                 headers=bearer(READER))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "skus"


async def test_every_event_type_is_produced_to_its_topic(client: Client) -> None:
    dc, store, sku = ref("DC"), ref("S"), ref("SKU")
    await post_events(client, receipt(dc, (sku, 10)))
    await settled(client, sku, 10)
    await post_events(client, transfer(dc, store, "shipped", (sku, 4), transfer_id="T-1"),
                      sale(dc, (sku, 1)))
    await settled(client, sku, 5)

    async def landed() -> dict[str, Any] | None:
        body = await read(client, sku)
        in_transit = {item["location_id"]: item["in_transit"] for item in body["locations"]}
        return body if in_transit == {dc: 0, store: 4} else None

    body = await eventually(landed, timeout=30, what="the destination leg")
    assert {item["location_id"]: item["on_hand"] for item in body["locations"]} == {dc: 5, store: 0}


async def test_ingest_refuses_a_batch_with_any_bad_event_and_produces_nothing(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    good = receipt(store, (sku, 5))
    bad_qty = receipt(store, (sku, 0))
    bad_type = {**receipt(store, (sku, 1)), "type": "theft"}
    missing = {k: v for k, v in sale(store, (sku, 1)).items() if k != "occurred_at"}
    response = await client.post("/v1/events", json={"events": [good, bad_qty, bad_type, missing]},
                                 headers=bearer(INGESTER))
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    named = {(e["index"], e["field"], e["reason"]) for e in problem["errors"]}
    assert (1, "lines.0.qty", "invalid_field") in named
    assert (2, "type", "unknown_type") in named
    assert (3, "occurred_at", "missing_field") in named
    assert not any(e["index"] == 0 for e in problem["errors"])
    # the good event alone was not produced: a later receipt of 1 is all there is
    await post_events(client, receipt(store, (sku, 1)))
    await settled(client, sku, 1)


async def test_ingest_validates_one_event_like_the_streams(client: Client) -> None:
    store, sku = ref("S"), ref("SKU")
    cases = [
        ({**sale(store, (sku, 1)), "reservationId": "R-1"}, "unknown_field"),
        ({**sale(store, (sku, 1)), "occurred_at": "2026-11-24T10:00:00"}, "invalid_field"),
        ({**sale(store, (sku, 1)), "lines": [{"sku": sku, "qty": "3"}]}, "invalid_field"),
        (transfer(store, store, "shipped", (sku, 1)), "same_location"),
        ([1, 2], "not_an_object"),
    ]
    for body, reason in cases:
        response = await client.post("/v1/events", json=body, headers=bearer(INGESTER))
        assert response.status == 422, body
        assert {e["reason"] for e in (await response.json())["errors"]} == {reason}
    for body in ({"events": []}, {"events": [receipt(store, (sku, 1))] * 501}, {"events": "x"},
                 {"events": [receipt(store, (sku, 1))], "extra": 1}):
        response = await client.post("/v1/events", json=body, headers=bearer(INGESTER))
        assert response.status == 422
