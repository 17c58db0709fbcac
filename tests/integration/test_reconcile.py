"""`ats erp reconcile FILE` against positions in the real cache, as the workers write them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from availability import topics, wire
from availability.model import Position
from tests.builders import ref

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def ats(*args: str, redis_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    if redis_url:
        env["ATS_REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "streams", "erp", "reconcile", *args], capture_output=True,
                          text=True, env=env, timeout=30, check=False)


async def test_reconcile_prints_the_drift_of_every_position(redis_url: str, tmp_path: Path) -> None:
    sku, other = ref("SKU"), ref("SKU")
    cache = Redis.from_url(redis_url)
    try:
        await cache.hset(topics.position_key(sku), mapping={  # type: ignore[misc]
            "S1": orjson.dumps(wire.cache_value(Position(on_hand=10, reserved=3))),
            "S2": orjson.dumps(wire.cache_value(Position(on_hand=-2))),
            "S3": orjson.dumps(wire.cache_value(Position(on_hand=7)))})
    finally:
        await cache.aclose()
    book = tmp_path / "book.csv"
    book.write_text(f"sku,location_id,on_hand\n{sku},S1,10\n{sku},S2,1\n{other},S1,4\n")

    out = ats(str(book), redis_url=redis_url)
    assert out.returncode == 0, out.stderr
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.stdout.splitlines()[1:-1]}
    assert rows == {(sku, "S1"): ["10", "10", "+0"], (sku, "S2"): ["1", "-2", "-3"],
                    (sku, "S3"): ["0", "7", "+7"], (other, "S1"): ["4", "0", "-4"]}
    assert out.stdout.splitlines()[-1] == "4 positions, 3 drifting, total |drift| 14"

    as_json = tmp_path / "book.json"
    as_json.write_text(json.dumps([{"sku": sku, "location_id": "S1", "on_hand": 10}]))
    out = ats(str(as_json), "--json", "--only-drift", "--fail-on-drift", redis_url=redis_url)
    assert out.returncode == 1
    assert json.loads(out.stdout) == [{"sku": sku, "location_id": "S2", "erp_on_hand": 0, "engine_on_hand": -2,
                                       "drift": -2},
                                      {"sku": sku, "location_id": "S3", "erp_on_hand": 0, "engine_on_hand": 7,
                                       "drift": 7}]


def test_reconcile_refuses_a_bad_book_and_a_missing_cache(tmp_path: Path) -> None:
    book = tmp_path / "book.csv"
    book.write_text("sku,on_hand\nA,1\n")
    out = ats(str(book), redis_url="redis://127.0.0.1:1")
    assert (out.returncode, "Traceback" in out.stderr) == (2, False)
    assert "location_id or location" in out.stderr
    book.write_text("sku,location_id,on_hand\nA,S1,1\n")
    out = ats(str(book), redis_url=None)
    assert out.returncode == 2
    assert "ATS_REDIS_URL" in out.stderr
