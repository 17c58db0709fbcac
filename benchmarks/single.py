"""Ingest, single-line events: events/s of one engine worker beside a stock Faust no-op agent.

One run, on the embedded broker and cache started here (or ``ATS_BROKER_URL`` / ``ATS_REDIS_URL``, fresh):
``--events`` one-line POS events (default 200,000; the workload of :mod:`benchmarks.ingest` with one line
per message) and the sentinels are produced before anything consumes; then, one after the other on the
same topics:

1. **baseline**: a stock Faust app with one no-op agent (:mod:`benchmarks.faust_noop`, its own consumer
   group, its own process), messages/s from the first message handed to the agent to the last;
2. **engine**: one ``python -m streams worker`` (RocksDB store), from the first position seen in the cache
   to every sentinel in the cache (and, for reference, from its spawn);
3. for reference, the plain aiokafka read of :mod:`benchmarks.ingest`, and the domain's ceiling on the
   same events (:mod:`benchmarks.ceiling`): the pure domain in this process, per CPU second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from streams import embedded

from . import ceiling
from . import rig as rigs
from . import workload as workloads

TARGET = 2.0  # issue 6: the engine at ≥ 2x the stock Faust no-op agent


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.single", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="one-line events to produce (default 200,000)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8, ATS_PARTITIONS)")
    parser.add_argument("--profile", type=Path, help="py-spy record the worker into this file (raw format)")
    return parser.parse_args(argv)


def faust_noop(rig: rigs.Rig, messages: int, timeout: float = 900) -> float:
    """Messages/s of the stock Faust no-op agent over every message of the workload's topics."""
    out = rig.root / "faust-noop.json"
    log = (rig.root / "faust-noop.log").open("ab")
    args = [sys.executable, "-m", "benchmarks.faust_noop", rig.settings.broker_url or "", str(messages), str(out),
            *workloads.TOPICS]
    noop = embedded.child_process(args, log=log)
    log.close()
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if noop.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write((rig.root / "faust-noop.log").read_text(errors="replace")[-4000:])
                raise RuntimeError("the Faust no-op agent stopped or timed out before reading every message")
            time.sleep(0.1)
        time.sleep(0.05)  # the file is written in one call; let it land
        result = json.loads(out.read_text())
    finally:
        embedded.stop_process(noop, timeout=20)
    return messages / (result["last"] - result["first"])


def measure(events: int, partitions: int, profile: Path | None) -> dict[str, Any]:
    workload = workloads.build(events, 1, partitions)
    messages = len(workload.messages) + len(workload.sentinels)
    with rigs.rig(partitions) as rig:
        asyncio.run(rigs.require_empty(rig, workloads.TOPICS))
        started = time.perf_counter()
        asyncio.run(workloads.produce(rig.bootstrap, workload))
        produce_s = time.perf_counter() - started
        faust_rate = faust_noop(rig, messages)
        run = rigs.run_engine(rig, workload, profile=profile)
        records, flushes = asyncio.run(rigs.changelog_records(rig))
        read_lines, read_s = asyncio.run(rigs.plain_read(rig, workloads.TOPICS, messages))
    rigs.verify(run)
    engine = workload.lines / run.applying_s
    domain = ceiling.measure(workload, partitions, flushes)
    return {
        "events": workload.lines, "partitions": partitions, "store": "rocksdb", "produce_s": round(produce_s, 2),
        "faust_noop_messages_per_s": round(faust_rate),
        "engine_events_per_s": round(engine), "engine_applying_s": round(run.applying_s, 2),
        "engine_events_per_s_incl_start": round(workload.lines / run.total_s),
        "engine_start_to_first_applied_s": round(run.first_applied - run.started, 2),
        "ratio": round(engine / faust_rate, 3), "ratio_incl_start": round(workload.lines / run.total_s / faust_rate, 3),
        "target_ratio": TARGET, "plain_read_events_per_s": round(read_lines / read_s),
        "checked_skus": len(run.checked),
        "changelog_records": records, "flushes": flushes, "worker_tuning": rigs.tuning(),
        "worker_cpu_us_per_event": round(run.cpu_s / workload.lines * 1e6, 2) if run.cpu_s is not None else None,
        "domain_ceiling_events_per_s": domain["lines_per_s"],
        "domain_ceiling_ratio": round(domain["lines_per_s"] / faust_rate, 3),
        "domain_ceiling_cpu_us_per_event": domain["cpu_us_per_line"],
    }


def _met(figures: dict[str, Any]) -> str:
    return "met" if figures["ratio"] >= TARGET else "missed"


def report(figures: dict[str, Any]) -> None:
    print(f"ingest, single-line events: {figures['events']:,} events, {figures['partitions']} partitions, "
          f"worker store {figures['store']} (produced in {figures['produce_s']} s)")
    print(f"  baseline stock Faust no-op agent:     {figures['faust_noop_messages_per_s']:>10,} messages/s")
    print(f"  engine, first applied → final answer: {figures['engine_events_per_s']:>10,} events/s   "
          f"ratio {figures['ratio']:.2f}x (target ≥ {TARGET:.0f}x: {_met(figures)})")
    print(f"  engine, incl. start/join/recovery:    {figures['engine_events_per_s_incl_start']:>10,} events/s   "
          f"ratio {figures['ratio_incl_start']:.2f}x (start to first applied "
          f"{figures['engine_start_to_first_applied_s']} s)")
    if figures["worker_cpu_us_per_event"] is not None:
        print(f"  worker CPU, first applied → final answer: {figures['worker_cpu_us_per_event']:>6} µs per event "
              "(steadier than the rates on a shared machine)")
    if "domain_ceiling_events_per_s" in figures:
        print(f"  ceiling, the domain alone in process: {figures['domain_ceiling_events_per_s']:>10,} events/s   "
              f"ratio {figures['domain_ceiling_ratio']:.2f}x ({figures['domain_ceiling_cpu_us_per_event']} µs per "
              "event: validate, apply, drain as often as the worker flushed; no I/O, no Faust)")
    print(f"  for reference, plain aiokafka read:   {figures['plain_read_events_per_s']:>10,} events/s")
    rigs.print_state_figures(figures, "events")


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print; returns the figures (``make bench`` writes them with the others)."""
    args = arguments(argv)
    figures = measure(args.events, args.partitions, args.profile)
    report(figures)
    return figures


def main(argv: list[str] | None = None) -> None:
    print(f"  written to {rigs.write_result('single', run(argv))}")


if __name__ == "__main__":
    main()
