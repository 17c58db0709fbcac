"""Auth, limits, error shapes and operations routes of the real app on a real cache and broker (no
worker: nothing here needs a decision), and what happens when the cache or the broker is down."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient

from availability.settings import Settings
from streams.admin import ensure_topics
from tests.builders import lines, receipt, ref

from .apiserver import ADMIN, INGESTER, READER, RESERVER, bearer, serve, settings_for, vouch_for_cache

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Client = TestClient[Any, Any]
SECURED = [("GET", "/v1/availability/SKU-1", None, "availability:read"),
           ("POST", "/v1/availability/query", {"skus": ["SKU-1"]}, "availability:read"),
           ("POST", "/v1/events", {"events": []}, "events:write"),
           ("POST", "/v1/reservations", {}, "reservations:write"),
           ("GET", "/v1/reservations/R-1", None, "reservations:write"),
           ("DELETE", "/v1/reservations/R-1", None, "reservations:write"),
           ("PUT", "/v1/erp/book", {"positions": []}, "admin"),
           ("GET", "/v1/erp/drift", None, "admin")]


@pytest.fixture(scope="module")
async def settings(module_broker: str, redis_url: str) -> Settings:
    settings = settings_for(module_broker, redis_url, max_body_bytes="8192", hold_timeout_ms="300")
    await ensure_topics(settings)  # the worker is absent, but its topics are laid out as it wants them
    await vouch_for_cache(settings)  # and the test stands in for it as the cache's writer
    return settings


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with serve(settings) as client:
        yield client


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_problem(response: Any, body: dict[str, Any], status: int) -> None:
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"] == "about:blank"


@pytest.mark.parametrize(("method", "path", "body", "scope"), SECURED)
async def test_every_secured_route_needs_a_token(client: Client, method: str, path: str, body: Any,
                                                 scope: str) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
                    bearer("not-a-token"), bearer(READER + "x")):
        response = await client.request(method, path, json=body, headers=headers)
        assert_problem(response, await response.json(), 401)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ats"'
    lacking = {"availability:read": INGESTER, "events:write": READER, "reservations:write": READER,
               "admin": RESERVER}[scope]
    response = await client.request(method, path, json=body, headers=bearer(lacking))
    problem = await response.json()
    assert_problem(response, problem, 403)
    assert scope in problem["detail"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    response = await client.request(method, path, json=body, headers=bearer(ADMIN))
    assert response.status not in (401, 403)


async def test_open_routes_need_no_token(client: Client) -> None:
    for path, content_type in (("/healthz", "application/json"), ("/metrics", "text/plain"),
                               ("/openapi.json", "application/json"), ("/docs", "text/html")):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type, path


async def test_tokens_never_reach_the_logs(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "guess-" + ref("token")
    await client.get("/v1/availability/SKU-1", headers=bearer(secret))
    await client.get("/v1/availability/SKU-1", headers=bearer(INGESTER))
    await client.get("/v1/availability/SKU-1", headers=bearer(READER))
    assert caplog.records  # the 401 and 403 were logged …
    for token in (secret, INGESTER, READER):
        assert token not in caplog.text  # … without the tokens


async def test_body_limits_and_syntax(client: Client) -> None:
    headers = bearer(ADMIN)
    big = orjson.dumps({"skus": ["S" * 60] * 200})
    response = await client.post("/v1/availability/query", data=big, headers=headers)
    problem = await response.json()
    assert_problem(response, problem, 413)
    assert "8192" in problem["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(10):
            yield b" " * 2000

    response = await client.post("/v1/events", data=chunks(), headers=headers)
    assert_problem(response, await response.json(), 413)
    for raw in (b"{not json", b"", b'{"skus": ["a"]'):
        response = await client.post("/v1/availability/query", data=raw, headers=headers)
        assert_problem(response, await response.json(), 400)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/availability/query", "/v1/reservations", "/v1/erp/book"])
async def test_deeply_nested_json_is_a_400_on_every_body(client: Client, path: str) -> None:
    """orjson parses 1,024 levels but writes only 254: an event nested 300 deep used to be a 500 on ingest."""
    deep = b"[" * 300 + b"]" * 300
    event = orjson.dumps(receipt(ref("S"), (ref("SKU"), 1)))
    event = event.replace(b'"event_id"', b'"source":' + deep + b',"event_id"')
    method = client.put if path == "/v1/erp/book" else client.post
    response = await method(path, data=event, headers=bearer(ADMIN))
    problem = await response.json()
    assert_problem(response, problem, 400)
    assert "nested deeper than" in problem["detail"]


async def test_wrong_types_name_their_fields(client: Client) -> None:
    headers = bearer(ADMIN)
    cases = [({"skus": "SKU-1"}, {"skus"}), ({"skus": ["ok", 7]}, {"skus.1"}), ({"skus": []}, {"skus"}),
             ({"skus": ["ok"], "locations": ["bad location"]}, {"locations.0"}),
             ({"skus": ["ok"], "colour": "red"}, {"colour"}), ([1, 2], {""}),
             ({"skus": [str(i % 10) for i in range(1001)]}, {"skus"})]
    for body, fields in cases:
        response = await client.post("/v1/availability/query", json=body, headers=headers)
        problem = await response.json()
        assert_problem(response, problem, 422)
        assert {error["field"] for error in problem["errors"]} == fields, body
    response = await client.get("/v1/availability/bad%20sku", headers=headers)
    assert_problem(response, await response.json(), 422)
    response = await client.get("/v1/availability/SKU-1", params={"location": "a/b"}, headers=headers)
    assert_problem(response, await response.json(), 422)
    for query in ("locations=S-1", "channel=ecom&channel=stores", "=x"):
        response = await client.get(f"/v1/availability/SKU-1?{query}", headers=headers)
        problem = await response.json()
        assert_problem(response, problem, 422)
        assert problem["errors"], query


async def test_unknown_routes_and_methods_are_problems(client: Client) -> None:
    response = await client.get("/v2/nothing")
    assert_problem(response, await response.json(), 404)
    response = await client.put("/v1/availability/query", headers=bearer(ADMIN))
    assert_problem(response, await response.json(), 405)
    assert "POST" in response.headers["Allow"]


async def test_no_decision_in_time_is_a_504_naming_where_to_look(client: Client) -> None:
    rid = ref("R")
    body = {"reservation_id": rid, "location_id": ref("S"), "lines": lines(("SKU-1", 1))}
    response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
    problem = await response.json()
    assert_problem(response, problem, 504)
    assert response.headers["Location"] == f"/v1/reservations/{rid}"
    assert "300 ms" in problem["detail"]


async def test_metrics_count_routes_by_template(client: Client) -> None:
    sku = ref("SKU")
    await client.get(f"/v1/availability/{sku}", headers=bearer(READER))
    text = await (await client.get("/metrics")).text()
    assert 'ats_api_requests_total{method="GET",route="/v1/availability/{sku}",status="200"}' in text
    assert "ats_api_request_duration_seconds_bucket" in text
    assert sku not in text
    assert 'ats_api_reservation_outcomes_total{action="hold",outcome="timeout"}' in text
    events = receipt(ref("S"), ("SKU-1", 1))
    await client.post("/v1/events", json={**events, "lines": []}, headers=bearer(INGESTER))
    text = await (await client.get("/metrics")).text()
    assert 'ats_api_events_rejected_total{reason="invalid_field"}' in text


async def test_each_app_has_its_own_registry(settings: Settings) -> None:
    async with serve(settings) as first, serve(settings) as second:
        await first.get("/healthz")
        await first.get("/healthz")
        await second.get("/healthz")
        one = await (await first.get("/metrics")).text()
        two = await (await second.get("/metrics")).text()
    assert 'ats_api_requests_total{method="GET",route="/healthz",status="200"} 2.0' in one
    assert 'ats_api_requests_total{method="GET",route="/healthz",status="200"} 1.0' in two


async def test_readiness_without_a_worker(settings: Settings) -> None:
    # a database of the cache of its own: no heartbeat of another module's worker is in it
    alone = settings.model_copy(update={"redis_url": urlunsplit(urlsplit(settings.redis_url)._replace(path="/9"))})
    async with serve(alone) as client:
        response = await client.get("/readyz")
        problem = await response.json()
    assert_problem(response, problem, 503)
    assert problem["checks"] == {"cache": "ok", "broker": "ok", "workers": "no worker heartbeat"}
    assert response.headers["Retry-After"]


async def test_cache_down_is_503_never_a_zero(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    async with serve(down) as client:
        response = await client.get("/v1/availability/SKU-1", headers=bearer(READER))
        assert_problem(response, await response.json(), 503)
        assert response.headers["Retry-After"] == "1"
        response = await client.post("/v1/availability/query", json={"skus": ["A", "B"]}, headers=bearer(READER))
        assert_problem(response, await response.json(), 503)
        body = {"reservation_id": ref("R"), "location_id": "S-1", "lines": lines(("SKU-1", 1))}
        response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
        assert_problem(response, await response.json(), 503)
        response = await client.get("/v1/reservations/R-1", headers=bearer(RESERVER))
        assert_problem(response, await response.json(), 503)
        response = await client.get("/readyz")
        assert_problem(response, await response.json(), 503)
        text = await (await client.get("/metrics")).text()
        assert 'ats_api_cache_errors_total{operation="read"}' in text


async def test_broker_down_is_503_with_retry_after(settings: Settings) -> None:
    down = settings.model_copy(update={"broker_url": f"kafka://127.0.0.1:{closed_port()}"})
    async with serve(down) as client:
        response = await client.post("/v1/events", json=receipt(ref("S"), ("SKU-1", 1)), headers=bearer(INGESTER))
        assert_problem(response, await response.json(), 503)
        assert response.headers["Retry-After"] == "2"
        body = {"reservation_id": ref("R"), "location_id": "S-1", "lines": lines(("SKU-1", 1))}
        response = await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))
        assert_problem(response, await response.json(), 503)
        # the broker failed a produce: until it answers again, the next ones are refused without waiting
        started = time.monotonic()
        response = await client.post("/v1/events", json=receipt(ref("S"), ("SKU-1", 1)), headers=bearer(INGESTER))
        assert_problem(response, await response.json(), 503)
        assert time.monotonic() - started < 2.0  # not the producer's 10 s
        assert response.headers["Retry-After"] == "2"


HOSTILE_REQUESTS = [
    ("GET", "/v1/availability/%2A", None), ("GET", "/v1/availability/%7Btag%7D", None),
    ("GET", "/v1/availability/a%0Ab", None), ("GET", "/v1/availability/a%20b", None),
    ("GET", "/v1/availability/SKU-1?location=S-%2A", None), ("GET", "/v1/availability/SKU-1?location=S%0D%0A1", None),
    ("POST", "/v1/availability/query", {"skus": ["SKU-1", "SKU-*"]}),
    ("POST", "/v1/availability/query", {"skus": ["SKU-1"], "locations": ["S-1\nS-2"]}),
    ("GET", "/v1/reservations/r%0A1", None), ("DELETE", "/v1/reservations/r%001", None),
    ("POST", "/v1/reservations", {"reservation_id": "r-1\nINFO forged", "location_id": "S-1",
                                  "lines": [{"sku": "SKU-1", "qty": 1}]}),
    ("POST", "/v1/reservations", {"reservation_id": "r-1", "location_id": "S-{1}",
                                  "lines": [{"sku": "SKU-1", "qty": 1}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE_REQUESTS)
async def test_hostile_strings_are_refused_before_any_cache_key_is_built(
        client: Client, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: Any) -> None:
    from yarl import URL

    from availability import topics

    built: list[str] = []
    for name in ("position_key", "reservation_key", "reservation_claim_key"):
        real = getattr(topics, name)
        monkeypatch.setattr(topics, name, lambda value, real=real: built.append(value) or real(value))
    response = await client.request(method, URL(path, encoded=True), json=body, headers=bearer(ADMIN))
    problem = await response.json()
    # aiohttp's router does not match a path segment holding "{": that one never reaches a handler (404).
    assert_problem(response, problem, 404 if "%7B" in path else 422)
    assert built == []


async def test_every_response_carries_a_request_id(client: Client) -> None:
    """The caller's own X-Request-Id comes back (for a support engineer to find); a missing or unsafe one
    is replaced by a new id; problems carry it too."""
    own = await client.get("/v1/availability/SKU-1", headers={**bearer(READER), "X-Request-Id": "pos-12:tx.991"})
    assert own.headers["X-Request-Id"] == "pos-12:tx.991"
    made = await client.get("/v1/availability/SKU-1", headers=bearer(READER))
    unsafe = await client.get("/v1/availability/SKU-1", headers={**bearer(READER), "X-Request-Id": "a b\tc"})
    refused = await client.get("/v1/availability/SKU-1")
    ids = [made.headers["X-Request-Id"], unsafe.headers["X-Request-Id"], refused.headers["X-Request-Id"]]
    assert refused.status == 401
    assert all(len(rid) == 16 and int(rid, 16) >= 0 for rid in ids)
    assert len(set(ids)) == 3
