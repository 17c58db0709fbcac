"""Read latency and throughput of the API under wrk, beside a bare aiohttp handler in the same run.

``python -m benchmarks.reads [--seconds S] [--skus N]``: starts everything with ``ats up`` (embedded broker
and cache, one worker, the API), stocks ``N`` SKUs at 20 locations through ``POST /v1/events`` and waits
until the API serves the last of them; then, each for ``S`` seconds with wrk (Debian's package):

* **one SKU**: ``GET /v1/availability/{sku}`` over 64 connections, the SKU drawn per request from the
  stocked ones (Zipf-popular), against a bare aiohttp app in its own process answering a canned body of
  the same size (the baseline: what aiohttp itself costs here). Targets (issue 6): ≥ 50 % of the baseline's
  requests/s, p99 ≤ 10 ms;
* **bulk**: ``POST /v1/availability/query`` with 100 SKUs over 16 connections. Target: p99 ≤ 25 ms.

wrk and the servers share the machine's cores; the ratio to the baseline, run the same way, is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp

from streams.embedded import free_port

from .rig import start_up

LOCATIONS = 20
GET_CONNECTIONS, BULK_CONNECTIONS, BULK_SKUS = 64, 16, 100

BARE_APP = """
import sys
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def canned(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/availability/{sku}", canned)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

# A wrk script: each request asks for one SKU of the list, Zipf-popular (rank r with weight 1/r).
GET_SCRIPT = """
skus = {%s}
cumulative, total = {}, 0
for i = 1, #skus do total = total + 1 / i; cumulative[i] = total end
request = function()
  local x, lo, hi = math.random() * total, 1, #skus
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cumulative[mid] < x then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/v1/availability/" .. skus[lo])
end
"""

POST_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def sku(index: int) -> str:
    return f"READ-SKU-{index:05d}"


def wrk(url: str, *, connections: int, seconds: int, script: str, token: str | None) -> dict[str, float]:
    """requests/s and latency percentiles (ms) of one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    os.unlink(lua.name)
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for share, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        figures[f"p{share}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


async def stock(url: str, token: str, skus: int) -> bytes:
    """Receive every SKU at every location; wait until the API shows the last one; one answer's body."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        events = [{"event_id": f"read-stock-{loc}-{start}", "type": "receipt", "occurred_at": "2026-11-27T08:00:00Z",
                   "location_id": f"READ-LOC-{loc:02d}",
                   "lines": [{"sku": sku(i), "qty": 5 + i % 7} for i in range(start, min(start + 500, skus))]}
                  for loc in range(LOCATIONS) for start in range(0, skus, 500)]
        for first in range(0, len(events), 50):
            async with http.post("/v1/events", json={"events": events[first:first + 50]}) as response:
                if response.status != 202:
                    raise RuntimeError(f"stocking: {response.status} {await response.text()}")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            async with http.get(f"/v1/availability/{sku(skus - 1)}") as response:
                body = await response.read()
                if response.status == 200 and len(json.loads(body)["locations"]) == LOCATIONS:
                    return body
            await asyncio.sleep(0.2)
    raise RuntimeError("the stocked SKUs did not show up within 300 s")


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--skus", type=int, default=2_000, help="SKUs stocked at 20 locations (default 2,000)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("not run: wrk is missing (apt-get install wrk)")
        return {"not_run": "wrk is missing"}
    with tempfile.TemporaryDirectory(prefix="ats-reads-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
        env.update(ATS_DATA_DIR=scratch, ATS_LOG_LEVEL="warning")
        up, url, token = start_up(env)
        bare_port = free_port()
        bare = None
        try:
            answer = asyncio.run(stock(url, token, args.skus))
            canned = Path(scratch) / "canned.json"
            canned.write_bytes(answer)
            bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), str(canned)])
            time.sleep(1.5)
            names = ", ".join(f'"{sku(i)}"' for i in range(args.skus))
            random.seed(7)
            bulk = json.dumps({"skus": random.sample([sku(i) for i in range(args.skus)], BULK_SKUS)})
            figures = {
                "baseline": wrk(f"http://127.0.0.1:{bare_port}", connections=GET_CONNECTIONS, seconds=args.seconds,
                                script=GET_SCRIPT % names, token=None),
                "one": wrk(url, connections=GET_CONNECTIONS, seconds=args.seconds, script=GET_SCRIPT % names,
                           token=token),
                "bulk": wrk(f"{url}/v1/availability/query", connections=BULK_CONNECTIONS, seconds=args.seconds,
                            script=POST_SCRIPT % bulk, token=token),
            }
        finally:
            if bare is not None:
                bare.send_signal(signal.SIGTERM)
                bare.wait(timeout=10)
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)
    one, base, bulk_figures = figures["one"], figures["baseline"], figures["bulk"]
    ratio = one["rps"] / base["rps"]
    print(textwrap.dedent(f"""\
        GET /v1/availability/{{sku}}, {GET_CONNECTIONS} connections, {args.seconds} s, {len(answer)}-byte answers:
          API      {one['rps']:>9,.0f} req/s  p50 {one.get('p50_ms', 0):.2f} ms  p99 {one.get('p99_ms', 0):.2f} ms  \
(non-2xx {one['non_2xx']:.0f})
          bare     {base['rps']:>9,.0f} req/s  p50 {base.get('p50_ms', 0):.2f} ms  p99 {base.get('p99_ms', 0):.2f} ms  \
(aiohttp, canned body)
          ratio    {ratio:.2f} (target ≥ 0.50; p99 target ≤ 10 ms)
        POST /v1/availability/query, {BULK_SKUS} SKUs, {BULK_CONNECTIONS} connections:
          API      {bulk_figures['rps']:>9,.0f} req/s  p50 {bulk_figures.get('p50_ms', 0):.2f} ms  \
p99 {bulk_figures.get('p99_ms', 0):.2f} ms  (non-2xx {bulk_figures['non_2xx']:.0f}; p99 target ≤ 25 ms)"""))
    return {"one": one, "baseline": base, "bulk": bulk_figures, "ratio": round(ratio, 3), "target_ratio": 0.5,
            "p99_target_ms": 10, "bulk_p99_target_ms": 25, "skus": args.skus, "locations": LOCATIONS,
            "seconds": args.seconds}


if __name__ == "__main__":
    run(sys.argv[1:])
