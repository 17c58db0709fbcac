"""Reservation decision latency through the whole product: ``ats up`` on the embedded broker and cache,
POST /v1/reservations answered once the owning worker has decided. Baseline in the same run: GET /healthz
of the same API (the HTTP round trip alone).

One client, one hold at a time, 50 ms apart, on a stocked SKU (uncontended: the floor of the
decision path; the contended 200 holds/s figure belongs to the peak simulator).
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time

import aiohttp

from .rig import start_up

HOLDS = 100


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def measure(url: str, token: str) -> tuple[list[float], list[float]]:
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
        receipt = {"event_id": "bench-stock", "type": "receipt", "occurred_at": "2026-11-24T09:00:00Z",
                   "location_id": "S1", "lines": [{"sku": "A", "qty": 1_000_000}]}
        assert (await http.post("/v1/events", json=receipt)).status == 202
        for _ in range(600):  # until the worker has applied the stock (a cold start joins the group first)
            if (await (await http.get("/v1/availability/A")).json())["network_ats"]:
                break
            await asyncio.sleep(0.1)
        holds, health = [], []
        for index in range(HOLDS):
            started = time.perf_counter()
            response = await http.post("/v1/reservations", json={
                "reservation_id": f"bench-{index}-{time.time_ns()}", "location_id": "S1",
                "lines": [{"sku": "A", "qty": 1}]})
            assert response.status == 201, await response.text()
            holds.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assert (await http.get("/healthz")).status == 200
            health.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
        return holds, health


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
        env.update(ATS_DATA_DIR=data_dir)
        up, url, token = start_up(env)
        try:
            holds, health = asyncio.run(measure(url, token))
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
    print(f"hold decisions ({HOLDS}, one at a time): p50 {percentile(holds, .5):.1f} ms, "
          f"p90 {percentile(holds, .9):.1f} ms, p99 {percentile(holds, .99):.1f} ms")
    print(f"baseline GET /healthz:              p50 {percentile(health, .5):.1f} ms, "
          f"p99 {percentile(health, .99):.1f} ms")


if __name__ == "__main__":
    main()
