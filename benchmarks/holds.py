"""Reservation decision latency through the whole product: ``ats up`` on the embedded broker and cache,
POST /v1/reservations answered once the owning worker has decided. Baseline in the same run: GET /healthz
of the same API (the HTTP round trip alone).

``python -m benchmarks.holds``: one client, one hold at a time, 50 ms apart, on a stocked SKU
(uncontended: the floor of the decision path).

``python -m benchmarks.holds --contended [--rate R] [--seconds S] [--clients C]``: the figure of issue 6.
``C`` clients (default 8, each its own HTTP connection pool) race at ``R`` holds/s in all (default 200,
open loop: each hold starts at its scheduled time whether or not earlier ones were answered) for ``S``
seconds (default 20) for 1 to 3 units of one of 4 SKUs at one store, stocked with half the units the run asks
for: the stock runs out half way, and from then on every hold races for the last units. Decision latency
(201 or 409) p50/p99 (target p99 ≤ 50 ms) beside ``GET /healthz`` sampled by a further client meanwhile;
then the oversell check: per SKU, the units of accepted holds ≤ the stock, and the API's ``reserved``
equals them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp

from .rig import start_up, tuning, write_result

HOLDS = 100
TARGET_P99_MS = 50.0
CONTENDED_SKUS = tuple(f"HOLD-RACE-{i}" for i in range(4))
CONTENDED_LOCATION = "HOLD-STORE"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def measure(url: str, token: str) -> tuple[list[float], list[float]]:
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
        receipt = {"event_id": "bench-stock", "type": "receipt", "occurred_at": "2026-11-24T09:00:00Z",
                   "location_id": "S1", "lines": [{"sku": "A", "qty": 1_000_000}]}
        assert (await http.post("/v1/events", json=receipt)).status == 202
        for _ in range(600):  # until the worker has applied the stock (a cold start joins the group first)
            if (await (await http.get("/v1/availability/A")).json()).get("network_ats"):  # 503s until the worker is up
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


async def stock_contended(http: aiohttp.ClientSession, units: int) -> None:
    receipt = {"event_id": f"bench-race-stock-{time.time_ns()}", "type": "receipt",
               "occurred_at": "2026-11-27T09:00:00Z", "location_id": CONTENDED_LOCATION,
               "lines": [{"sku": sku, "qty": units} for sku in CONTENDED_SKUS]}
    assert (await http.post("/v1/events", json=receipt)).status == 202
    for _ in range(1200):  # until the worker has applied the stock (a cold start joins the group first)
        answers = [await (await http.get(f"/v1/availability/{sku}")).json() for sku in CONTENDED_SKUS]
        if all(answer.get("network_ats") == units for answer in answers):  # 503s until the worker is up
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the stock did not show in the API within 120 s")


async def contended(url: str, token: str, rate: int, seconds: float, clients: int) -> dict[str, Any]:
    """Open-loop holds from ``clients`` sessions; latencies, outcomes and the oversell check."""
    rng = random.Random(17)
    count = int(rate * seconds)
    plan = [(rng.choice(CONTENDED_SKUS), rng.randint(1, 3)) for _ in range(count)]
    units = sum(qty for _, qty in plan) // len(CONTENDED_SKUS) // 2  # per SKU: half of what is asked
    headers = {"Authorization": f"Bearer {token}"}
    sessions = [aiohttp.ClientSession(url, headers=headers) for _ in range(clients + 1)]
    try:
        await stock_contended(sessions[0], units)
        latencies: list[float] = []
        accepted = dict.fromkeys(CONTENDED_SKUS, 0)
        outcomes: dict[int, int] = {}
        health: list[float] = []
        stamp = time.time_ns()

        async def hold(index: int, sku: str, qty: int) -> None:
            started = time.perf_counter()
            async with sessions[1 + index % clients].post("/v1/reservations", json={
                    "reservation_id": f"race-{stamp}-{index}", "location_id": CONTENDED_LOCATION,
                    "lines": [{"sku": sku, "qty": qty}]}) as response:
                await response.read()
                status = response.status
            outcomes[status] = outcomes.get(status, 0) + 1
            if status in (201, 409):
                latencies.append((time.perf_counter() - started) * 1000)
            if status == 201:
                accepted[sku] += qty

        async def sample_health(until: float) -> None:
            while time.monotonic() < until:
                started = time.perf_counter()
                async with sessions[0].get("/healthz") as response:
                    assert response.status == 200
                health.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.05)

        started = time.monotonic()
        sampler = asyncio.create_task(sample_health(started + seconds))
        tasks = []
        for index, (sku, qty) in enumerate(plan):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            tasks.append(asyncio.create_task(hold(index, sku, qty)))
        await asyncio.gather(*tasks, sampler)
        elapsed = time.monotonic() - started
        reserved = {}
        for sku in CONTENDED_SKUS:
            answer = await (await sessions[0].get(f"/v1/availability/{sku}")).json()
            reserved[sku] = sum(entry["reserved"] for entry in answer["locations"])
    finally:
        for session in sessions:
            await session.close()
    return {"holds": count, "rate_target": rate, "rate": round(count / elapsed), "clients": clients,
            "skus": len(CONTENDED_SKUS), "stock_per_sku": units, "outcomes": outcomes,
            "accepted_units": accepted, "reserved_in_api": reserved,
            "oversold": {sku: accepted[sku] - units for sku in CONTENDED_SKUS if accepted[sku] > units},
            "reserved_mismatch": {sku: (accepted[sku], reserved[sku]) for sku in CONTENDED_SKUS
                                  if accepted[sku] != reserved[sku]},
            **{f"decision_p{p}_ms": round(percentile(latencies, p / 100), 1) for p in (50, 90, 99)},
            **{f"healthz_p{p}_ms": round(percentile(health, p / 100), 1) for p in (50, 99)},
            "target_p99_ms": TARGET_P99_MS, "worker_tuning": tuning()}


def report_contended(figures: dict[str, Any]) -> None:
    met = figures["decision_p99_ms"] <= TARGET_P99_MS
    print(f"hold decisions, contended: {figures['holds']:,} holds at {figures['rate']}/s (target "
          f"{figures['rate_target']}/s) from {figures['clients']} clients on {figures['skus']} SKUs of "
          f"{figures['stock_per_sku']} units at one store; outcomes {figures['outcomes']}")
    print(f"  decision (201 or 409): p50 {figures['decision_p50_ms']} ms, p90 {figures['decision_p90_ms']} ms, "
          f"p99 {figures['decision_p99_ms']} ms (target p99 ≤ {TARGET_P99_MS:.0f} ms: {'met' if met else 'missed'})")
    print(f"  baseline GET /healthz meanwhile: p50 {figures['healthz_p50_ms']} ms, p99 {figures['healthz_p99_ms']} ms")
    if figures["worker_tuning"]:
        print(f"  worker settings varied: {figures['worker_tuning']}")
    print(f"  oversell: {figures['oversold'] or 'none'} (accepted units per SKU {figures['accepted_units']} ≤ "
          f"{figures['stock_per_sku']}); API reserved == accepted: "
          f"{'yes' if not figures['reserved_mismatch'] else figures['reserved_mismatch']}")


def up_and(measure_with: Any) -> Any:
    """``ats up`` in a scratch directory, ``measure_with(url, token)`` inside it."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
        env.update(ATS_DATA_DIR=data_dir, ATS_LOG_LEVEL="warning", **tuning())
        up, url, token = start_up(env)
        try:
            return asyncio.run(measure_with(url, token))
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.holds", description=__doc__.split("\n")[0])
    parser.add_argument("--contended", action="store_true", help="the contended 200 holds/s figure")
    parser.add_argument("--rate", type=int, default=200, help="holds/s in all (default 200)")
    parser.add_argument("--seconds", type=float, default=20, help="duration (default 20)")
    parser.add_argument("--clients", type=int, default=8, help="racing clients (default 8)")
    return parser.parse_args(argv)


def run_contended(argv: list[str] | None = None) -> dict[str, Any]:
    """The contended figure, printed; returns it (``make bench`` writes it with the others)."""
    args = arguments(argv)
    figures = up_and(lambda url, token: contended(url, token, args.rate, args.seconds, args.clients))
    report_contended(figures)
    if figures["oversold"] or figures["reserved_mismatch"]:
        raise SystemExit("OVERSOLD: accepted holds exceed the stock, or the API's reserved disagrees")
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if arguments(argv).contended:
        print(f"  written to {write_result('holds-contended', run_contended(argv))}")
        return
    holds, health = up_and(measure)
    print(f"hold decisions ({HOLDS}, one at a time): p50 {percentile(holds, .5):.1f} ms, "
          f"p90 {percentile(holds, .9):.1f} ms, p99 {percentile(holds, .99):.1f} ms")
    print(f"baseline GET /healthz:              p50 {percentile(health, .5):.1f} ms, "
          f"p99 {percentile(health, .99):.1f} ms")


if __name__ == "__main__":
    main()
