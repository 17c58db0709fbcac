"""The operations console and what feeds it, on a real worker, broker and cache, in a real browser.

Headless Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright (the ``test`` extra) with no
browser download. A machine without it fails here with the command that installs it; nothing skips.
Expected numbers are the contract's arithmetic, worked by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from availability import topics
from tests.builders import hold, receipt, ref, sale

from .apiserver import ADMIN, READER, bearer, serve, settings_for
from .cluster import Cluster, eventually
from .conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Client = TestClient[Any, Any]
CHROMIUM = Path("/usr/bin/chromium")
NOTHING_YET = "\N{EN DASH}"  # what a tile shows before its first number
SILENT_AFTER = 2  # the API's threshold: a location quiet for 2 s is listed as silent
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
async def cluster(module_broker: str, redis_url: str, metrics_port: int,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """One worker serving /metrics on a port of its own."""
    env = {"ATS_WORKER_METRICS_PORT": str(metrics_port), "ATS_WORKER_METRICS_HOST": "127.0.0.1"}
    async with running(Cluster(module_broker, redis_url, tmp_path_factory.mktemp("console"), partitions=4,
                               env=env)) as cluster:
        yield cluster


@pytest.fixture(scope="module")
async def client(cluster: Cluster) -> AsyncIterator[Client]:
    # the cluster's partition count: the API checks the cache epoch of every partition it knows of, and
    # would answer 503 for partitions 4-7 that no worker of this module writes
    settings = settings_for(cluster.broker_url, cluster.redis_url, drift_refresh_seconds="1",
                            silent_after_seconds=str(SILENT_AFTER), partitions=str(cluster.partitions))
    async with serve(settings) as client:
        yield client


async def stock(cluster: Cluster, location: str) -> dict[str, str]:
    """Three SKUs at ``location``: A 5, B oversold to -2 (receipt 1, sale 3), C 10; settled in the cache."""
    skus = {"a": ref("SKU-a"), "b": ref("SKU-b"), "c": ref("SKU-c")}
    await cluster.send(topics.RECEIPTS, receipt(location, (skus["a"], 5), (skus["b"], 1), (skus["c"], 10)))
    await cluster.send(topics.SALES, sale(location, (skus["b"], 3)))
    await eventually(lambda: _on_hand(cluster, skus["b"], location, -2), what="sale applied")
    return skus


async def _on_hand(cluster: Cluster, sku: str, location: str, want: int) -> bool:
    position = await cluster.position(sku, location)
    return position is not None and position[0] == want


async def flow(cluster: Cluster, location: str, *, rounds: int | None = None) -> None:
    """Events for the console to show while it polls, about ten a second: a sale per round and, every fifth
    round, a poison message, a hold taken and a hold refused. ``rounds`` None: until cancelled."""
    sku = ref("SKU-flow")
    await cluster.send(topics.RECEIPTS, receipt(location, (sku, 1_000)))
    n = 0
    while rounds is None or n < rounds:
        n += 1
        await cluster.send(topics.SALES, sale(location, (sku, 1)))
        if n % 5 == 0:
            await cluster.send(topics.SALES, b"{not json", key=location)
            await cluster.send(topics.RESERVATIONS, hold(location, ref("R"), (sku, 1)))
            await cluster.send(topics.RESERVATIONS, hold(location, ref("R"), (sku, 1_000_000)))
        await asyncio.sleep(0.1)


# ---- the JSON the console reads ---------------------------------------------------------------------

async def test_lowest_lists_a_locations_skus_most_oversold_first(cluster: Cluster, client: Client) -> None:
    location = ref("S")
    skus = await stock(cluster, location)
    response = await client.get(f"/v1/locations/{location}/lowest", headers=bearer(READER))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["location_id"] == location
    # net availability: B 1 - 3 = -2 (ATS 0), A 5, C 10
    assert [(i["sku"], i["ats"], i["on_hand"]) for i in body["items"]] == [
        (skus["b"], 0, -2), (skus["a"], 5, 5), (skus["c"], 10, 10)]
    two = await (await client.get(f"/v1/locations/{location}/lowest?limit=2", headers=bearer(READER))).json()
    assert [i["sku"] for i in two["items"]] == [skus["b"], skus["a"]]
    unknown = await (await client.get(f"/v1/locations/{ref('S')}/lowest", headers=bearer(READER))).json()
    assert unknown["items"] == []
    bad = await client.get(f"/v1/locations/{location}/lowest?limit=0", headers=bearer(READER))
    assert bad.status == 422


async def test_the_summary_needs_the_admin_scope_and_counts_what_flows(cluster: Cluster, client: Client) -> None:
    assert (await client.get("/v1/ops/summary", headers=bearer(READER))).status == 403
    assert (await client.get("/v1/ops/summary")).status == 401

    async def summary() -> dict[str, Any]:
        response = await client.get("/v1/ops/summary", headers=bearer(ADMIN))
        assert response.status == 200, await response.text()
        return await response.json()

    before = await summary()
    location = ref("S")
    await flow(cluster, location, rounds=10)  # 10 sales, 2 poison messages, 2 holds taken, 2 refused

    async def counted() -> dict[str, Any] | None:
        now = await summary()
        grew = (_count(now, "events", "sale", "applied") - _count(before, "events", "sale", "applied") >= 10
                and _count(now, "dead_letters", "invalid_json") - _count(before, "dead_letters", "invalid_json") >= 2
                and _count(now, "holds", "rejected") - _count(before, "holds", "rejected") >= 2)
        return now if grew else None

    now = await eventually(counted, timeout=30, what="the summary counts the flow")
    assert _count(now, "events", "sale", "dead_letter") - _count(before, "events", "sale", "dead_letter") >= 2
    assert any(w["partitions"] for w in now["workers"])
    assert sum(now["freshness"]["counts"]) > sum(before["freshness"]["counts"])
    assert len(now["freshness"]["counts"]) == len(now["freshness"]["le"]) + 1
    assert set(now["lag"]) == {"total", "partitions"}


def _count(summary: dict[str, Any], *path: str) -> int:
    value: Any = summary
    for key in path:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, int) else 0


async def test_the_worker_serves_its_metrics(cluster: Cluster, metrics_port: int) -> None:
    location = ref("S")
    await stock(cluster, location)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    applied = {(s.labels["type"], s.labels["result"]): s.value for s in families["ats_worker_events"].samples
               if s.name.endswith("_total")}
    assert applied[("receipt", "applied")] >= 1
    assert applied[("sale", "applied")] >= 1
    negative = next(s.value for s in families["ats_worker_positions_negative_on_hand"].samples)
    assert negative >= 1  # B at -2
    lag_partitions = {s.labels["partition"] for s in families["ats_worker_consumer_lag"].samples}
    assert lag_partitions == {"0", "1", "2", "3"}


async def test_drift_gauges_refresh_without_a_drift_request(cluster: Cluster, client: Client) -> None:
    location = ref("S")
    skus = await stock(cluster, location)
    book = {"positions": [{"sku": skus["a"], "location_id": location, "on_hand": 5},
                          {"sku": skus["c"], "location_id": location, "on_hand": 7}]}  # C: engine 10, book 7
    response = await client.put("/v1/erp/book", json=book, headers=bearer(ADMIN))
    assert response.status == 200, await response.text()
    posted = time.time()

    async def gauges() -> dict[str, float] | None:
        text = await (await client.get("/metrics")).text()
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name.startswith("ats_erp_drift")}
        # Computed from this book: the cache is shared, and the last refresh before the PUT read another
        # test's book (once a generated one with 3 units of drift over 3 positions, the figure waited for)
        if values.get("ats_erp_drift_checked_timestamp_seconds", 0) < posted:
            return None
        # A: engine 5, book 5; C: engine 10, book 7 (B is not one of the book's SKUs)
        return values if values.get("ats_erp_drift_units") == 3 else None

    values = await eventually(gauges, timeout=15, what="drift gauges refreshed in the background")
    assert values["ats_erp_drift_positions"] == 1
    assert values["ats_erp_drift_checked_timestamp_seconds"] > 0


# ---- the page in a browser --------------------------------------------------------------------------

async def until(page: Any, expression: str, timeout_ms: int) -> None:
    """Poll a JavaScript expression in the page until it is true. (Playwright's wait_for_function evaluates
    strings with eval, which the console's Content-Security-Policy rightly refuses; evaluate is not affected.)"""
    deadline = time.monotonic() + timeout_ms / 1000
    while not await page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_ms / 1000:.0f} s: {expression}; page status "
                                 f"{await page.text_content('#status')!r}")
        await asyncio.sleep(0.1)

@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the console is tested in Debian's Chromium "
                    "(apt-get install -y chromium; .ci/run installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright is missing: pip install -e '.[test]' ({exc})")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_the_console_shows_live_numbers_and_looks_up_a_sku(cluster: Cluster, client: Client, browser: Any,
                                                                 tmp_path: Path) -> None:
    location = ref("S")
    skus = await stock(cluster, location)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(client.make_url("/console")))
    assert await page.title() == "ATS console"
    assert await page.text_content("#status") == "not connected"

    await page.fill("#token", ADMIN)
    await page.click("#connect")
    await until(page, "document.getElementById('status').textContent.startsWith('live')", 15_000)
    flowing = asyncio.create_task(flow(cluster, location))
    try:
        # live numbers while events flow: a positive event rate, dead letters and hold outcomes by name
        await until(page, "Number(document.getElementById('rate-events').textContent) > 0", 30_000)
        await page.wait_for_selector("#dead-table tbody td:text-is('invalid_json')", timeout=30_000)
        await page.wait_for_selector("#holds-table tbody td:text-is('rejected')", timeout=30_000)
        await page.wait_for_selector("#holds-table tbody td:text-is('held')", timeout=30_000)
        await page.wait_for_selector("#events-table tbody td:text-is('sale')", timeout=30_000)
        assert (await page.text_content("#fresh-p99")) != NOTHING_YET
        assert int(await page.text_content("#workers") or 0) >= 1
        assert int(await page.text_content("#negative") or 0) >= 1  # B at -2

        # lowest ATS at the location: B (net -2), A 5, C 10, then the flowing SKU (hundreds left)
        await page.fill("#location", location)
        await page.click("#location-form button")
        await until(page, "document.querySelectorAll('#lowest-table tbody tr').length >= 3", 15_000)
        rows = await page.eval_on_selector_all(
            "#lowest-table tbody tr", "rows => rows.map(r => [...r.cells].slice(0, 3).map(c => c.textContent))")
        assert rows[:3] == [[skus["b"], "0", "-2"], [skus["a"], "5", "5"], [skus["c"], "10", "10"]]

        # the lookup box
        await page.fill("#lookup-sku", skus["c"])
        await page.click("#lookup-form button")
        await until(page, "document.getElementById('lookup-network').textContent === '10'", 15_000)
        cells = await page.eval_on_selector_all("#lookup-table tbody tr td", "cells => cells.map(c => c.textContent)")
        assert cells == [location, "10", "10", "0", "0", "0", "0"]
        await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    finally:
        flowing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flowing
        await page.close()
    assert errors == []


async def late_sales(cluster: Cluster, location: str) -> None:
    """Sales that happened two hours ago, sent now, a few a second (until cancelled)."""
    at = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    while True:
        await cluster.send(topics.SALES, sale(location, (ref("SKU"), 1), at=at))
        await asyncio.sleep(0.2)


async def test_the_console_lists_a_silent_store_until_it_speaks(cluster: Cluster, client: Client,
                                                                browser: Any) -> None:
    location = ref("S")
    await cluster.send(topics.RECEIPTS, receipt(location, (ref("SKU"), 1)))
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(str(client.make_url("/console")))
        await page.fill("#token", ADMIN)
        await page.click("#connect")
        row = f"#silent-table tbody td:text-is('{location}')"
        await page.wait_for_selector(row, timeout=30_000)  # quiet for 2 s: listed
        assert int(await page.text_content("#silent-count") or 0) >= 1
        assert "2 s" in (await page.text_content("#silent-rule") or "")
        await cluster.send(topics.SALES, sale(location, (ref("SKU"), 1)))
        await page.wait_for_selector(row, state="detached", timeout=30_000)  # it spoke: gone
        # its till catches up: two hours of sales arrive now, counted as events over 5 minutes late
        catching_up = asyncio.create_task(late_sales(cluster, location))
        try:
            await until(page, "Number(document.getElementById('late-rate').textContent) > 0", 30_000)
        finally:
            catching_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await catching_up
    finally:
        await page.close()
    assert errors == []


async def test_the_console_says_when_a_token_is_refused(client: Client, browser: Any) -> None:
    page = await browser.new_page()
    try:
        await page.goto(str(client.make_url("/console")))
        await page.fill("#token", READER)  # availability:read only: the summary needs admin
        await page.click("#connect")
        await until(page, "document.getElementById('status').textContent.startsWith('403')", 15_000)
    finally:
        await page.close()
