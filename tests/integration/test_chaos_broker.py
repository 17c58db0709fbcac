"""Chaos: the broker stopped for 30 s and started again, while a worker and the API run.

Always on a local Apache Kafka (``streams/kafka.py``), whatever ``ATS_TEST_BROKER`` says: the embedded
broker keeps nothing across a restart; Kafka restarted on its log directory keeps topics, records and
the group's offsets. Needs Java 17+ and Maven, and fails (never skips) naming what is missing.

Meanwhile the API's ingest and holds answer 503 with ``Retry-After`` within a bounded wait, reads keep
answering from the cache, and the worker resumes by itself once the broker is back. Every event is
applied once: those produced before, the ones a client retried after its 503, and the ones produced
after; ERP postings add up to on_hand with one quantity per posting id.
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
from streams.embedded import EmbeddedServer
from streams.kafka import resume_kafka, start_kafka
from tests.brokers import kafka_cache_dir
from tests.builders import receipt, ref

from .apiserver import INGESTER, RESERVER, bearer, serve, settings_for
from .chaos import Client, Probe, erp_agrees, report, until
from .cluster import Cluster
from .conftest import ready
from .test_recovery import converge, workload

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(420)]

PARTITIONS = 4
DOWN_SECONDS = 30.0


class RestartableKafka:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server: EmbeddedServer | None = start_kafka(directory, cache_dir=kafka_cache_dir())
        self.port, self.url = self.server.port, self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def start(self) -> None:
        self.server = resume_kafka(self.directory, cache_dir=kafka_cache_dir(), port=self.port)


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[RestartableKafka]:
    try:
        server = RestartableKafka(tmp_path / "kafka")
    except Exception as exc:
        pytest.fail(f"this test needs a local Apache Kafka (Java 17+ and Maven): {exc}")
    yield server
    server.stop()


async def test_broker_down_30s_ingest_and_holds_503_reads_answer_worker_resumes(
        kafka: RestartableKafka, redis_url: str, tmp_path: Path) -> None:
    cluster = Cluster(kafka.url, redis_url, tmp_path, partitions=PARTITIONS)
    await ensure_topics(cluster.settings)
    before, expected = workload(random.Random(41), 1500)
    after, expected_after = workload(random.Random(42), 600)
    (sku, store), (on_hand, _) = next((key, value) for key, value in expected.items() if value[0])
    held_store, held_sku = ref("S"), ref("SKU")
    expected[(held_sku, held_store)] = [100, 0]
    before.append((topics.RECEIPTS, receipt(held_store, (held_sku, 100)), None))

    def right(body: dict[str, Any]) -> bool:
        return any(item["location_id"] == store and item["on_hand"] == on_hand for item in body["locations"])

    settings = settings_for(kafka.url, redis_url, partitions=str(PARTITIONS), hold_timeout_ms="5000")
    try:
        cluster.start_worker("w0")
        await ready(cluster)
        await cluster.send_many(before)
        await converge(cluster, expected, timeout=120)
        async with serve(settings) as client:
            assert (await hold(client, held_store, held_sku, 2)).status == 201
            probe = Probe(client, sku, right, interval=0.2)
            async with probe.running():
                kafka.stop()
                stopped = time.monotonic()
                outage = await during_outage(client, stopped, held_store, held_sku)
                await asyncio.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - stopped)))
                kafka.start()
                restarted = time.monotonic()
            reads = dict(probe.statuses)
            # the clients retry what got a 503 (some of it may have been written anyway: applied once)
            await until(lambda: retry(client, outage["events"]), timeout=120, what="ingest answers again")
            retried = time.monotonic() - restarted
            held = await hold(client, held_store, held_sku, 3, reservation_id=outage["reservation_id"])
            assert held.status == 201, await held.text()
            probe_store, probe_sku = ref("probe"), ref("SKU")
            await cluster.send(topics.RECEIPTS, receipt(probe_store, (probe_sku, 1)))
            await until(lambda: _present(cluster, probe_sku, probe_store), timeout=120,
                        what="the worker applies new events")
            resumed = time.monotonic() - restarted
        await cluster.send_many(after)
        for event in outage["events"]:
            expected[(event["lines"][0]["sku"], event["location_id"])] = [event["lines"][0]["qty"], 0]
        everything = {**expected, **expected_after}
        await converge(cluster, everything, timeout=180)
        assert (await cluster.position(held_sku, held_store) or [])[1] == 5  # the two holds, once each
        postings = await erp_agrees(cluster, everything, timeout=120)
        assert probe.wrong == [], f"wrong answers while the broker was down: {probe.wrong[:3]}"
        assert set(reads) == {200}, reads  # every read answered from the cache
        for kind in ("ingest", "holds"):
            assert {status for status, _, _ in outage[kind]} == {503}, outage
        assert all(after for _, _, after in outage["ingest"] + outage["holds"])  # Retry-After on every 503
        assert cluster.workers["w0"].poll() is None, "the worker died"
        waits = [seconds for _, seconds, _ in outage["ingest"] + outage["holds"]]
        report("broker down 30 s (Apache Kafka)", down_seconds=DOWN_SECONDS,
               api_503_ingest=len(outage["ingest"]), api_503_holds=len(outage["holds"]),
               slowest_503_s=round(max(waits), 2),
               slowest_later_503_s=round(max(s for kind in ("ingest", "holds") for _, s, _ in outage[kind][1:]), 3),
               reads_200=reads.get(200, 0), wrong_answers=len(probe.wrong),
               ingest_answers_again_s=round(retried, 2), worker_resumed_s=round(resumed, 2),
               positions=len(everything), erp_posting_ids=postings)
    finally:
        await cluster.close()


async def during_outage(client: Client, stopped: float, store: str, sku: str) -> dict[str, Any]:
    """Ingest and holds, tried again and again while the broker is down: each answer's status, how long
    it took and its ``Retry-After``; the events, to retry once the broker is back."""
    seen: dict[str, Any] = {"ingest": [], "holds": [], "events": [], "reservation_id": ref("R")}
    while time.monotonic() - stopped < DOWN_SECONDS - 12:  # the last tries must end before the broker returns
        event = receipt(ref("S"), (ref("SKU"), 7))
        seen["events"].append(event)
        started = time.monotonic()
        ingest, held = await asyncio.gather(
            client.post("/v1/events", json=event, headers=bearer(INGESTER)),
            hold(client, store, sku, 3, reservation_id=seen["reservation_id"]))
        for kind, response in (("ingest", ingest), ("holds", held)):
            seen[kind].append((response.status, time.monotonic() - started, response.headers.get("Retry-After")))
            if response.status == 503:
                assert response.content_type == "application/problem+json"
        # as a client does: wait what Retry-After says (the API answers at once while the broker is down)
        await asyncio.sleep(float(ingest.headers.get("Retry-After") or 1))
    return seen


async def hold(client: Client, store: str, sku: str, qty: int, *, reservation_id: str | None = None) -> Any:
    body = {"reservation_id": reservation_id or ref("R"), "location_id": store, "ttl_seconds": 3600,
            "lines": [{"sku": sku, "qty": qty}]}
    return await client.post("/v1/reservations", json=body, headers=bearer(RESERVER))


async def retry(client: Client, events: list[dict[str, Any]]) -> bool:
    response = await client.post("/v1/events", json={"events": events}, headers=bearer(INGESTER))
    return response.status == 202


async def _present(cluster: Cluster, sku: str, store: str) -> bool:
    return await cluster.position(sku, store) is not None
