"""Silent stores on a real worker, broker and cache: a location that goes quiet is flagged by
``GET /v1/locations/{id}/status``, ``GET /v1/locations/silent`` and the worker's gauge, and clears when it
speaks again; a till that catches up shows in the lateness histogram; a worker restarted on an empty disk
still knows when its locations last spoke.

The threshold is 2 s (worker and API), trading hours ``always``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from availability import topics
from availability.silence import Heard, encode
from tests.builders import ref, sale

from .apiserver import READER, bearer, serve, settings_for
from .cluster import Cluster, eventually
from .conftest import ready, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Client = TestClient[Any, Any]
SILENT_AFTER = 2


#: a location with hours of its own (ATS_TRADING_HOURS_FILE): open one hour a day, six hours from now
CLOSED_NOW = ref("S-closed")


@pytest.fixture(scope="module")
def hours_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    opens = (datetime.now(UTC) + timedelta(hours=6)).hour
    path = tmp_path_factory.mktemp("hours") / "hours.json"
    path.write_text(orjson.dumps({CLOSED_NOW: f"UTC; Daily {opens:02d}:00-{(opens + 1) % 24:02d}:00"}).decode(),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def cluster(module_broker: str, redis_url: str, metrics_port: int, hours_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    env = {"ATS_WORKER_METRICS_PORT": str(metrics_port), "ATS_SILENT_AFTER_SECONDS": str(SILENT_AFTER),
           "ATS_TRADING_HOURS_FILE": str(hours_file)}
    async with running(Cluster(module_broker, redis_url, tmp_path_factory.mktemp("silent"), partitions=2,
                               env=env)) as cluster:
        yield cluster


@pytest.fixture(scope="module")
async def client(cluster: Cluster, hours_file: Path) -> AsyncIterator[Client]:
    settings = settings_for(cluster.broker_url, cluster.redis_url, silent_after_seconds=str(SILENT_AFTER),
                            trading_hours_file=str(hours_file))
    async with serve(settings) as client:
        yield client


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def speak(cluster: Cluster, location: str, *, ago: timedelta = timedelta(0)) -> None:
    await cluster.send(topics.SALES, sale(location, (ref("SKU"), 1), at=iso(datetime.now(UTC) - ago)))


async def status(client: Client, location: str) -> dict[str, Any]:
    response = await client.get(f"/v1/locations/{location}/status", headers=bearer(READER))
    assert response.status == 200, await response.text()
    return await response.json()


async def silent_list(client: Client) -> list[str]:
    response = await client.get("/v1/locations/silent", headers=bearer(READER))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["silent_after_seconds"] == SILENT_AFTER
    quiet = [item["quiet_seconds"] for item in body["items"]]
    assert quiet == sorted(quiet), "the most recently gone quiet first"
    return [item["location_id"] for item in body["items"]]


async def scrape(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


async def silent_gauge(port: int) -> float:
    return float(next(s.value for s in (await scrape(port))["ats_worker_silent_locations"].samples))


async def test_a_silent_location_is_flagged_and_clears_when_it_speaks(cluster: Cluster, client: Client,
                                                                       metrics_port: int) -> None:
    location = ref("S")
    before = time.time()
    await speak(cluster, location)
    heard = await eventually(lambda: _heard(client, location), what="the location's last event recorded")
    assert heard["silent"] is False
    assert heard["trading_now"] is True
    arrived = datetime.fromisoformat(heard["last_arrival_at"]).timestamp()
    assert before - 1 <= arrived <= time.time()  # the record's Kafka timestamp
    assert heard["last_event_at"] <= heard["last_arrival_at"]

    # quiet for longer than 2 s: flagged by the status, the list and the worker's gauge
    flagged = await eventually(lambda: _silent(client, location, True), timeout=15, what="flagged silent")
    assert flagged["quiet_seconds"] > SILENT_AFTER
    assert location in await silent_list(client)
    assert await silent_gauge(metrics_port) >= 1  # this location (and any other quiet one of this module)

    # it speaks: cleared everywhere
    await speak(cluster, location)
    cleared = await eventually(lambda: _silent(client, location, False), timeout=15, what="cleared")
    assert cleared["last_arrival_at"] > flagged["last_arrival_at"]
    assert location not in await silent_list(client)


async def test_every_quiet_location_is_counted_by_the_gauge(cluster: Cluster, client: Client,
                                                            metrics_port: int) -> None:
    locations = [ref("S") for _ in range(3)]
    for location in locations:
        await speak(cluster, location)
    for location in locations:
        await eventually(lambda location=location: _heard(client, location), what=f"{location} recorded")
    await asyncio.sleep(SILENT_AFTER + 0.5)
    listed = set(await silent_list(client))
    assert set(locations) <= listed
    assert await silent_gauge(metrics_port) >= len(listed) - 1  # the API and the gauge look a moment apart


async def test_a_till_catching_up_shows_as_late_events(cluster: Cluster, client: Client, metrics_port: int) -> None:
    def late(families: dict[str, Any]) -> float:
        """Events that arrived more than an hour but at most four after they happened."""
        buckets = {s.labels["le"]: s.value for s in families["ats_worker_event_lateness_seconds"].samples
                   if s.name.endswith("_bucket")}
        return buckets["14400.0"] - buckets["3600.0"]

    before = late(await scrape(metrics_port))
    location = ref("S")
    for minutes in (150, 140, 130, 120, 110):  # an offline till's sales of two hours ago, sent now
        await speak(cluster, location, ago=timedelta(minutes=minutes))

    async def counted() -> bool:
        return late(await scrape(metrics_port)) - before == 5

    await eventually(counted, timeout=30, what="5 events 1-4 h late in the histogram")

    async def latest_heard() -> timedelta | None:
        """Arrival minus business time of the location's record, once it holds the last of them: the
        histogram counts an event as it is applied, the record comes with the batch's cache write after
        (a scrape between the two once saw all five counted and the record at the fourth, 120 min)."""
        heard = await _heard(client, location)
        if heard is None:
            return None
        lag = datetime.fromisoformat(heard["last_arrival_at"]) - datetime.fromisoformat(heard["last_event_at"])
        return lag if lag < timedelta(minutes=115) else None

    # the business time is the latest of them (110 min ago); arrival is now
    lag = await eventually(latest_heard, timeout=15, what="the location's record at its latest event")
    assert timedelta(minutes=109) < lag < timedelta(minutes=112)


async def test_a_location_closed_now_is_quiet_but_not_silent(cluster: Cluster, client: Client) -> None:
    await speak(cluster, CLOSED_NOW)
    await eventually(lambda: _heard(client, CLOSED_NOW), what="the closed location's event recorded")
    await asyncio.sleep(SILENT_AFTER + 0.5)
    body = await status(client, CLOSED_NOW)
    assert body["quiet_seconds"] > SILENT_AFTER
    assert (body["trading_now"], body["silent"]) == (False, False)
    assert CLOSED_NOW not in await silent_list(client)


async def test_status_of_an_unknown_or_invalid_location(client: Client) -> None:
    unknown = ref("S")
    assert await status(client, unknown) == {"location_id": unknown, "last_event_at": None, "last_arrival_at": None,
                                             "quiet_seconds": None, "silent": False, "trading_now": True}
    bad = await client.get("/v1/locations/bad%20id/status", headers=bearer(READER))
    assert bad.status == 422
    assert bad.content_type == "application/problem+json"
    assert "location_id" in (await bad.json())["detail"]
    assert (await client.get(f"/v1/locations/{unknown}/status")).status == 401


async def test_a_worker_restarted_on_an_empty_disk_keeps_when_its_locations_spoke(
        cluster: Cluster, client: Client, metrics_port: int) -> None:
    location = ref("S")
    await speak(cluster, location)
    first = await eventually(lambda: _heard(client, location), what="recorded")
    # locations a worker heard long ago, whose events the inputs no longer hold (retention): only the cache
    # knows them, so a restarted worker that did not read them back could not count them
    long_ago = int((time.time() - 600) * 1000)
    forgotten = [ref("S-old") for _ in range(5)]
    await cluster.cache.hset(topics.LOCATIONS_KEY, mapping={name: encode(Heard(long_ago, long_ago))
                                                            for name in forgotten})
    await eventually(lambda: _silent(client, location, True), timeout=15, what="flagged silent")
    listed = await silent_list(client)  # this module's quiet locations (and other modules': one worker owns all)
    assert {location, *forgotten} <= set(listed)
    cluster.kill()
    cluster.start_worker(wipe=True)
    await ready(cluster)
    # the restarted worker read the times back from the cache: its gauge counts every location silent before
    await eventually(lambda: _gauge_at_least(metrics_port, len(listed)), timeout=30, what="the gauge after a restart")
    assert (await status(client, location))["last_arrival_at"] == first["last_arrival_at"]
    await speak(cluster, location)
    await eventually(lambda: _silent(client, location, False), timeout=15, what="cleared after the restart")


async def _heard(client: Client, location: str) -> dict[str, Any] | None:
    body = await status(client, location)
    return body if body["last_arrival_at"] is not None else None


async def _silent(client: Client, location: str, want: bool) -> dict[str, Any] | None:
    body = await status(client, location)
    return body if body["last_arrival_at"] is not None and body["silent"] is want else None


async def _gauge_at_least(port: int, want: float) -> bool:
    try:
        return await silent_gauge(port) >= want
    except (aiohttp.ClientError, StopIteration, KeyError):  # not serving yet
        return False
