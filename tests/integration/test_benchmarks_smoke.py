"""The ingest benchmark runs end to end on a tiny workload and prints its figures (no timing is asserted:
benchmarks are not tests). It starts its own embedded broker and cache, whatever broker the suite uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_benchmark_prints_its_figures(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--lines", "5000"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=80)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "baseline plain aiokafka read" in out.stdout
    assert "engine, first applied → final answer" in out.stdout
    assert "ceiling, the domain alone in process" in out.stdout
    (result,) = (tmp_path / ".ats" / "bench").glob("ingest-*.json")
    written = json.loads(result.read_text())
    assert written["machine"]["nproc"] >= 1
    assert written["figures"]["lines"] == 5000
    assert written["figures"]["checked_skus"] > 0  # Σ on_hand of a sample matched the workload's arithmetic
    assert written["figures"]["domain_ceiling_lines_per_s"] > 0


def _bench(tmp_path: Path, module: str, *args: str) -> tuple[str, dict[str, object]]:
    """Run ``python -m benchmarks.<module> args`` in ``tmp_path``; (its output, the figures it wrote)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stdout + out.stderr
    (result,) = (tmp_path / ".ats" / "bench").glob("*.json")
    return out.stdout, json.loads(result.read_text())["figures"]


@pytest.mark.timeout(180)
def test_freshness_benchmark_prints_its_figures(tmp_path: Path) -> None:
    out, figures = _bench(tmp_path, "freshness", "--seconds", "2", "--load", "200")
    assert "baseline GET /healthz round trip" in out
    assert figures["probes"] == 20  # every probe receipt showed in the API
    assert figures["fresh_p50_ms"] > 0


@pytest.mark.timeout(180)
def test_contended_holds_benchmark_never_oversells(tmp_path: Path) -> None:
    out, figures = _bench(tmp_path, "holds", "--contended", "--seconds", "2", "--rate", "50", "--clients", "4")
    assert "baseline GET /healthz meanwhile" in out
    assert figures["oversold"] == {}
    assert figures["reserved_mismatch"] == {}
    assert figures["outcomes"]["201"]
    assert figures["outcomes"]["409"]  # the stock ran out: the holds raced for the last units


@pytest.mark.timeout(180)
def test_recovery_benchmark_prints_its_figures(tmp_path: Path) -> None:
    out, figures = _bench(tmp_path, "recovery", "--positions", "5000")
    assert "baseline plain aiokafka read of the changelog" in out
    assert figures["positions"] == 5000
    assert figures["checked_skus"] > 0  # served as the workload's arithmetic
    assert figures["changelog_records"] > 0


@pytest.mark.timeout(180)
def test_memory_benchmark_prints_its_figures(tmp_path: Path) -> None:
    out, figures = _bench(tmp_path, "memory", "--positions", "4000", "--ids", "1000")
    assert "baseline: empty state" in out
    assert "EXTRAPOLATED" in out
    assert figures["positions"] == 4000
    assert figures["ids"] == 1000
    assert figures["rss_empty_mib"] > 0
    assert figures["peak_rss_full_mib"] >= figures["rss_full_mib"]
