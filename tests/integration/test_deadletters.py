"""Dead letters on the real broker and cache: the worker refuses bad input, the API lists it with its
provenance, and a corrected redrive changes the state exactly once (a second redrive changes nothing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner

from availability import topics
from availability.routing import owner_partition
from streams.cli import cli
from tests.builders import receipt, ref

from .apiserver import ADMIN, READER, bearer, serve, settings_for
from .cluster import Cluster, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def api(engine: Cluster) -> AsyncIterator[TestClient[Any, Any]]:
    async with serve(settings_for(engine.broker_url, engine.redis_url, partitions="8")) as client:
        yield client


async def listed(api: TestClient[Any, Any], **query: Any) -> dict[str, Any]:
    response = await api.get("/v1/deadletters", params=query, headers=bearer(ADMIN))
    assert response.status == 200, await response.text()
    page: dict[str, Any] = await response.json()
    return page


async def dead_letter_of(api: TestClient[Any, Any], origin: tuple[str, int, int], since: str) -> dict[str, Any]:
    """Wait until the worker has dead-lettered the record produced at ``origin`` and the API lists it."""
    async def find() -> dict[str, Any] | None:
        page = await listed(api, since=since, limit=200)
        return next((i for i in page["items"] if (i["topic"], i["partition"], i["offset"]) == origin), None)
    found: dict[str, Any] = await eventually(find, timeout=30, what=f"dead letter of {origin}")
    return found


async def redrive(api: TestClient[Any, Any], body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/v1/deadletters/redrive", json=body, headers=bearer(ADMIN))
    assert response.status == 200, await response.text()
    report: dict[str, Any] = await response.json()
    return report


def now_rfc3339(back_seconds: int = 5) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - back_seconds))


async def test_dead_letters_are_listed_with_reason_and_provenance_filtered_and_paged(
        engine: Cluster, api: TestClient[Any, Any]) -> None:
    since = now_rfc3339()
    location, sku = ref("S"), ref("SKU")
    sent = {
        "invalid_json": await engine.send(topics.SALES, b'{"event_id": "x", ', key=location),
        "invalid_field": await engine.send(topics.RECEIPTS, receipt(location, (sku, 0))),
        "type_topic_mismatch": await engine.send(topics.SALES, receipt(location, (sku, 1))),
    }
    found = {reason: await dead_letter_of(api, origin, since) for reason, origin in sent.items()}
    for reason, item in found.items():
        assert item["reason"] == reason
    assert "lines.0.qty" in found["invalid_field"]["detail"]
    assert found["invalid_json"]["payload"] == '{"event_id": "x", '

    one = await api.get(f"/v1/deadletters/{found['invalid_field']['id']}", headers=bearer(ADMIN))
    assert one.status == 200
    assert await one.json() == found["invalid_field"]

    only_json = await listed(api, reason="invalid_json", since=since, limit=200)
    assert {i["reason"] for i in only_json["items"]} == {"invalid_json"}
    assert found["invalid_json"]["id"] in {i["id"] for i in only_json["items"]}
    on_receipts = await listed(api, topic=topics.RECEIPTS, since=since, limit=200)
    assert {i["topic"] for i in on_receipts["items"]} == {topics.RECEIPTS}

    # one record per page, following the cursor: every one of ours once, newest first
    seen: list[dict[str, Any]] = []
    query: dict[str, Any] = {"since": since, "limit": 1}
    for _ in range(100):
        page = await listed(api, **query)
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    ids = [i["id"] for i in seen]
    assert len(ids) == len(set(ids))
    assert {item["id"] for item in found.values()} <= set(ids)
    stamps = [i["dead_lettered_at"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)

    # the CLI shows the same records
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, cli, [
        "deadletters", "list", "--reason", "invalid_json", "--since", since, "--json",
        "--api", str(api.make_url("")), "--token", ADMIN])
    assert result.exit_code == 0, result.output
    assert found["invalid_json"]["id"] in {i["id"] for i in orjson.loads(result.output)["items"]}


async def test_a_corrected_dead_letter_redriven_changes_the_state_exactly_once(
        engine: Cluster, api: TestClient[Any, Any]) -> None:
    since = now_rfc3339()
    location, sku = ref("S"), ref("SKU")
    bad = receipt(location, (sku, 5))
    bad["lines"][0]["qty"] = "5"  # a string: invalid_field
    letter = await dead_letter_of(api, await engine.send(topics.RECEIPTS, bad), since)
    assert letter["reason"] == "invalid_field"

    uncorrected = await redrive(api, {"ids": [letter["id"]]})
    assert uncorrected["summary"] == {"accepted": 0, "rejected": 1, "not_found": 0}
    assert uncorrected["items"][0]["rejection"]["reason"] == "invalid_field"
    assert uncorrected["items"][0]["produced"] is False

    corrected = dict(bad, lines=[{"sku": sku, "qty": 5}])
    dry = await redrive(api, {"ids": [letter["id"]], "correction": corrected, "dry_run": True})
    assert dry["items"][0]["status"] == "accepted"
    assert dry["items"][0]["produced"] is False

    first = await redrive(api, {"ids": [letter["id"]], "correction": corrected})
    assert (first["items"][0]["status"], first["items"][0]["produced"], first["items"][0]["event_id"]) == (
        "accepted", True, bad["event_id"])
    assert first["items"][0]["produced_to"] == topics.RECEIPTS
    await eventually(lambda: _on_hand_is(engine, sku, location, 5), what="the corrected receipt applied")

    again = await redrive(api, {"ids": [letter["id"]], "correction": corrected})
    assert again["items"][0]["status"] == "accepted"
    # a later receipt at the same location (same partition, so behind the redriven copy) shows the copy did nothing
    await engine.send(topics.RECEIPTS, receipt(location, (sku, 1)))
    await eventually(lambda: _on_hand_is(engine, sku, location, 6), what="the sentinel receipt applied")
    await asyncio.sleep(0.5)
    assert (await engine.position(sku, location) or [None])[0] == 6

    copies = await _redriven_copies(engine, location, bad["event_id"])
    assert copies == [letter["id"].encode(), letter["id"].encode()]


async def test_redrive_by_reason_reports_each_record(engine: Cluster, api: TestClient[Any, Any]) -> None:
    since = now_rfc3339()
    location = ref("S")
    origin = await engine.send(topics.SALES, b"not json at all", key=location)
    letter = await dead_letter_of(api, origin, since)
    report = await redrive(api, {"reason": ["invalid_json"], "since": since, "dry_run": True})
    mine = [i for i in report["items"] if i["id"] == letter["id"]]
    assert len(mine) == 1
    assert mine[0]["status"] == "rejected"
    assert mine[0]["rejection"]["reason"] == "invalid_json"
    assert all(i["reason"] == "invalid_json" for i in report["items"])
    missing = await redrive(api, {"ids": ["0:999999999"]})
    assert missing["summary"] == {"accepted": 0, "rejected": 0, "not_found": 1}


async def test_dead_letters_need_the_admin_scope(api: TestClient[Any, Any]) -> None:
    for method, path in (("GET", "/v1/deadletters"), ("GET", "/v1/deadletters/0:0"),
                         ("POST", "/v1/deadletters/redrive")):
        forbidden = await api.request(method, path, headers=bearer(READER), json={"ids": ["0:0"]})
        assert forbidden.status == 403, path
        assert forbidden.content_type == "application/problem+json"
        anonymous = await api.request(method, path, json={"ids": ["0:0"]})
        assert anonymous.status == 401, path


async def test_bad_requests_are_problems(api: TestClient[Any, Any]) -> None:
    for query in ({"reason": "nope"}, {"since": "yesterday"}, {"cursor": "garbage"}, {"limit": "0"}):
        response = await api.get("/v1/deadletters", params=query, headers=bearer(ADMIN))
        assert response.status == 422, query
    for body in ({}, {"ids": ["0:1", "0:2"], "correction": {}}, {"ids": ["0:1"], "range": {
            "partition": 0, "from_offset": 0, "to_offset": 1}}):
        response = await api.post("/v1/deadletters/redrive", json=body, headers=bearer(ADMIN))
        assert response.status == 422, body
        assert response.content_type == "application/problem+json"


async def _on_hand_is(engine: Cluster, sku: str, location: str, expected: int) -> bool:
    position = await engine.position(sku, location)
    return position is not None and position[0] == expected


async def _redriven_copies(engine: Cluster, location: str, event_id: str) -> list[bytes]:
    """The ``ats-redrive-of`` header of each copy of ``event_id`` on the receipts topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=engine.settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topics.RECEIPTS, owner_partition(location, engine.partitions))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        headers: list[bytes] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=300)
            if not batch and headers:
                break
            for record in batch.get(tp, ()):
                trace = [value for key, value in record.headers if key == "ats-redrive-of"]
                if trace and orjson.loads(record.value)["event_id"] == event_id:
                    headers += trace
        return headers
    finally:
        await consumer.stop()
