"""``ats simulate`` and ``ats replay`` as a user runs them, on the real broker and cache with a real worker and
the real API app: the smoke profile end to end (report, charts, no oversell, every position as the
arithmetic says), and a replayed file whose events land and whose bad line is reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from simulation.replay import BadLine, read
from tests.builders import receipt, ref, sale

from .apiserver import RESERVER, TOKENS, serve, settings_for
from .cluster import Cluster, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ATS = [sys.executable, "-m", "streams"]
REPORT_KEYS = {"profile", "run", "produced", "throughput", "lag", "freshness", "api", "holds", "oversell", "state",
               "erp", "series", "lag_series", "health", "worker_series"}
PNG = b"\x89PNG\r\n\x1a\n"


def _env(cluster: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_BROKER_URL=cluster.broker_url, ATS_REDIS_URL=cluster.redis_url,
               ATS_PARTITIONS=str(cluster.partitions), ATS_API_TOKENS=TOKENS, ATS_TICK_INTERVAL_MS="200",
               COLUMNS="160", PYTHONUNBUFFERED="1")  # a run killed at the timeout has printed what it got to
    return env


async def _ats(cluster: Cluster, *args: str, timeout: float) -> tuple[int, str]:
    """Run ``ats ARGS`` to its end; one still running after ``timeout`` is killed and the test fails with
    what it printed, the worker's tasks and the worker log's tail (a stalled run says where it stalled)."""
    process = await asyncio.create_subprocess_exec(*ATS, *args, env=_env(cluster), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    printed = bytearray()

    async def read() -> None:
        while chunk := await process.stdout.read(65536):  # type: ignore[union-attr]
            printed.extend(chunk)
        await process.wait()

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        process.send_signal(signal.SIGUSR1)  # the simulator prints where each of its tasks waits
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), 3.0)
        process.kill()
        await process.wait()
        logged = cluster.log()
        await cluster.dump_tasks()
        ours = [line for line in cluster.log()[len(logged):].splitlines() if "/streams/" in line or "TASK" in line]
        pytest.fail(f"ats {args[0]} still running after {timeout:.0f} s; it printed:\n"
                    f"{printed.decode(errors='replace')[-12000:]}\n--- worker log (tail) ---\n{logged[-12000:]}\n"
                    f"--- the worker's tasks (our frames) ---\n" + "\n".join(ours[-200:]))
    return process.returncode or 0, printed.decode(errors="replace")


async def test_simulate_smoke_writes_the_report_and_charts_with_no_oversell(engine: Cluster, tmp_path: Path) -> None:
    report_dir, record = tmp_path / "report", tmp_path / "day.jsonl"
    # a hold waits up to 20 s for its decision: a busy shared machine must not turn the run into 504s
    async with serve(settings_for(engine.broker_url, engine.redis_url, hold_timeout_ms="20000")) as client:
        code, out = await _ats(engine, "simulate", "--profile", "smoke", "--duration", "15", "--report",
                               str(report_dir), "--record", str(record), "--api", str(client.make_url("")),
                               "--token", RESERVER, "--drain-timeout", "90", timeout=240)
    assert (report_dir / "report.json").exists(), out[-4000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["throughput"]["drained"], (report["throughput"], engine.log()[-12000:])
    assert code == 0, out[-4000:]
    assert set(report) >= REPORT_KEYS
    assert report["run"]["stack"] == "configured"
    assert report["oversell"]["count"] == 0, report["oversell"]
    assert report["state"]["mismatches"] == 0, report["state"]
    assert report["state"]["positions_checked"] > 500
    assert report["throughput"]["applied_lines_per_s"] > 0
    assert report["freshness"]["count"] > 10
    assert report["freshness"]["p50_ms"] is not None
    assert report["api"]["reads"]["count"] > 100
    assert report["api"]["reads"]["p99_ms"] is not None
    assert report["holds"]["asked"] > 20
    assert report["holds"]["decision_latency"]["p99_ms"] is not None
    outcomes = report["holds"]["outcomes"]
    assert sum(n for kind in outcomes.values() for n in kind.values()) == report["holds"]["asked"], outcomes
    assert outcomes["ordinary"].get("sold"), outcomes  # checkouts named their holds
    assert report["erp"]["postings"] > 0
    assert report["erp"]["netting_ratio"] >= 1
    assert report["erp"]["conservation_mismatches"] == 0, report["erp"]["conservation_examples"]
    mix = report["produced"]["mix"]
    for kind in ("pos_sale", "late_sale", "return", "transfer_shipped", "transfer_received", "count_cycle",
                 "duplicate", "ecom_sale"):
        assert mix.get(kind, {}).get("events"), kind
    assert len(report["series"]) >= 15
    # the worker published its memory and error-log count every tick: the soak's judgement has its samples
    assert report["worker_series"], report["health"]
    assert all(mib and mib > 10 for samples in report["worker_series"].values() for _, mib, _ in samples)
    assert set(report["health"]) == {"memory", "lag", "error_logs", "healthy"}
    for chart in ("rates.png", "latency.png", "lag.png", "memory.png"):
        assert (report_dir / chart).read_bytes().startswith(PNG), chart
    assert "oversell" in out
    assert "netting ratio" in out
    # what --record wrote is what `ats replay` reads: every line a valid event
    parsed = list(read(record))
    assert len(parsed) >= report["produced"]["messages"]
    assert not [line for line in parsed if isinstance(line, BadLine)]


async def test_replay_lands_the_events_and_reports_the_bad_line(engine: Cluster, tmp_path: Path) -> None:
    store, sku = ref("S"), ref("SKU")
    events = [receipt(store, (sku, 10)), sale(store, (sku, 3)), receipt(store, (sku, 5))]
    bad = {**sale(store, (sku, 1)), "lines": [{"sku": sku, "qty": 0}]}
    path = tmp_path / "day.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(events[0]), orjson.dumps(events[1]), b"", orjson.dumps(bad),
                                 b"{not json", orjson.dumps(events[2])]) + b"\n")
    code, out = await _ats(engine, "replay", str(path), "--rate", "200", timeout=60)
    assert code == 0, out
    assert f"{path}:4: skipped: invalid_field" in out, out
    assert f"{path}:5: skipped:" in out, out
    assert "replayed 3 events (3 lines)" in out, out
    assert "2 bad line(s)" in out, out
    on_hand = await eventually(lambda: _on_hand_is(engine, sku, store, 12), timeout=30, what="replayed events")
    assert on_hand


async def test_replay_strict_stops_at_the_first_bad_line(engine: Cluster, tmp_path: Path) -> None:
    store, sku = ref("S"), ref("SKU")
    path = tmp_path / "day.jsonl"
    path.write_bytes(orjson.dumps(receipt(store, (sku, 4))) + b"\n{not json\n"
                     + orjson.dumps(receipt(store, (sku, 100))) + b"\n")
    code, out = await _ats(engine, "replay", str(path), "--strict", timeout=60)
    assert code == 1, out
    assert "--strict: stopped at line 2" in out, out
    assert "replayed 1 events" in out, out
    await eventually(lambda: _on_hand_is(engine, sku, store, 4), timeout=30, what="the line before the bad one")


async def _on_hand_is(cluster: Cluster, sku: str, location: str, expected: int) -> bool:
    position = await cluster.position(sku, location)
    return position is not None and position[0] == expected
