"""Read latency and throughput of the API under wrk, beside a bare aiohttp handler in the same run.

``python -m benchmarks.reads [--seconds S] [--skus N]``: starts everything with ``ats up`` (embedded broker
and cache, one worker, the API), stocks ``N`` SKUs at 20 locations through ``POST /v1/events`` and waits
until the API serves the last of them; then, each for ``S`` seconds with wrk (Debian's package):

* **one SKU**: ``GET /v1/availability/{sku}`` over 64 connections, the SKU drawn per request from the
  stocked ones (Zipf-popular), against a bare aiohttp app in its own process answering a canned body of
  the same size (the baseline: what aiohttp itself costs here). Targets (issue 6): ≥ 50 % of the baseline's
  requests/s, p99 ≤ 10 ms. First, for ``--warmup`` seconds, the same load on the API just stocked
  (**cold**: every SKU's first request reads it from the cache), reported on a line of its own; the
  measured run follows, as a product page's reads meet an API that has been up a while;
* **bulk**: ``POST /v1/availability/query`` with 100 SKUs over 16 connections. Target: p99 ≤ 25 ms.

wrk and the servers share the machine's cores; the ratio to the baseline, run the same way, is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
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


def child_pid(parent: int, module: str) -> int:
    """The process ``python -m {module}`` that ``parent`` started (``ats up`` starts the API so)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"-m" in argv and module.encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no child process python -m {module} of {parent}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answer_sources(url: str) -> dict[str, float]:
    """The API's ``ats_api_answers_total`` by source (kept in memory, read from the cache and kept, direct)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310 - our own loopback API
        text = response.read().decode()
    return {source: float(count) for source, count in
            re.findall(r'^ats_api_answers_total\{source="(\w+)"\} ([\d.e+]+)$', text, re.M)}


@contextlib.contextmanager
def spying(pid: int, profile: Path | None, run: str) -> Iterator[None]:
    """py-spy on ``pid`` (raw format, to ``{profile}.{run}``) while the block runs; nothing without a path."""
    if profile is None:
        yield
        return
    spy_bin = Path(sys.executable).parent / "py-spy"
    if not spy_bin.exists():
        raise SystemExit(f"--profile needs py-spy: {Path(sys.executable).parent / 'pip'} install py-spy")
    spy = subprocess.Popen([str(spy_bin), "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                            "-o", f"{profile}.{run}", "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def wrk(url: str, *, connections: int, seconds: int, script: str, token: str | None,
        server: int | None = None) -> dict[str, float]:
    """requests/s and latency percentiles (ms) of one wrk run; with ``server`` (a pid), also the CPU time
    that process spent per request (µs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    cpu_before = cpu_seconds(server) if server else 0.0
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    cpu = cpu_seconds(server) - cpu_before if server else 0.0
    os.unlink(lua.name)
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    requests = re.search(r"(\d+) requests in", out)
    if server and requests:
        figures["cpu_us_per_request"] = round(cpu / int(requests.group(1)) * 1e6, 1)
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
    parser.add_argument("--warmup", type=int, default=5,
                        help="seconds of the same load on the API before the measured run (default 5; 0: none)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="py-spy the API process (raw format) over each run: FILE.one and FILE.bulk "
                             "(sum one up with python -m benchmarks.profile)")
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
            api = child_pid(up.pid, "api")
            figures = {"baseline": wrk(f"http://127.0.0.1:{bare_port}", connections=GET_CONNECTIONS,
                                       seconds=args.seconds, script=GET_SCRIPT % names, token=None, server=bare.pid)}
            if args.warmup:
                figures["cold"] = wrk(url, connections=GET_CONNECTIONS, seconds=args.warmup,
                                      script=GET_SCRIPT % names, token=token, server=api)
                figures["cold"]["answers"] = answer_sources(url)
            with spying(api, args.profile, "one"):
                figures["one"] = wrk(url, connections=GET_CONNECTIONS, seconds=args.seconds,
                                     script=GET_SCRIPT % names, token=token, server=api)
            with spying(api, args.profile, "bulk"):
                figures["bulk"] = wrk(f"{url}/v1/availability/query", connections=BULK_CONNECTIONS,
                                      seconds=args.seconds, script=POST_SCRIPT % bulk, token=token, server=api)
            figures["answers"] = answer_sources(url)
        finally:
            if bare is not None:
                bare.send_signal(signal.SIGTERM)
                bare.wait(timeout=10)
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)
    one, base, bulk_figures, sources = figures["one"], figures["baseline"], figures["bulk"], figures["answers"]
    ratio = one["rps"] / base["rps"]
    cold = figures.get("cold")
    print(f"GET /v1/availability/{{sku}}, {GET_CONNECTIONS} connections, {args.seconds} s, {len(answer)}-byte answers:")
    print(f"  API      {_latencies(one)}  (non-2xx {one['non_2xx']:.0f}; CPU {_cpu(one)} µs/request)")
    print(f"  bare     {_latencies(base)}  (aiohttp, canned body; CPU {_cpu(base)} µs/request)")
    if cold is not None:
        print(f"  API cold {_latencies(cold)}  (the first {args.warmup} s after stocking: "
              f"{cold['answers'].get('read', 0):,.0f} answers read from the cache; not the targets' run)")
    print(f"  ratio    {ratio:.2f} (target ≥ 0.50; p99 target ≤ 10 ms)")
    print(f"POST /v1/availability/query, {BULK_SKUS} SKUs, {BULK_CONNECTIONS} connections:")
    print(f"  API      {_latencies(bulk_figures)}  (non-2xx {bulk_figures['non_2xx']:.0f}; "
          f"CPU {_cpu(bulk_figures)} µs/request; p99 target ≤ 25 ms)")
    print(f"answers by source over all: {', '.join(f'{k} {v:,.0f}' for k, v in sources.items())}")
    return {"one": one, "baseline": base, "cold": cold, "bulk": bulk_figures, "answers": sources,
            "ratio": round(ratio, 3),
            "target_ratio": 0.5, "p99_target_ms": 10, "bulk_p99_target_ms": 25, "skus": args.skus,
            "locations": LOCATIONS, "seconds": args.seconds}


def _latencies(figures: dict[str, float]) -> str:
    return (f"{figures['rps']:>9,.0f} req/s  p50 {figures.get('p50_ms', 0):.2f} ms  "
            f"p99 {figures.get('p99_ms', 0):.2f} ms")


def _cpu(figures: dict[str, float]) -> str:
    return f"{figures.get('cpu_us_per_request', 0):.0f}"


if __name__ == "__main__":
    run(sys.argv[1:])
