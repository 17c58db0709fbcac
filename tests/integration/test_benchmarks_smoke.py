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
    (result,) = (tmp_path / ".ats" / "bench").glob("ingest-*.json")
    written = json.loads(result.read_text())
    assert written["machine"]["nproc"] >= 1
    assert written["figures"]["lines"] == 5000
    assert written["figures"]["checked_skus"] > 0  # Σ on_hand of a sample matched the workload's arithmetic
