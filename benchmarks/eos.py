"""Faust's ``processing_guarantee="exactly_once"`` on Apache Kafka beside our idempotent at-least-once design.

``python -m benchmarks.eos`` starts a local Apache Kafka 4.4 (KRaft, :mod:`streams.kafka`; needs Java 17+ and
Maven, else it says "not run" and exits 0), produces ``--lines`` lines (default 200,000) of 50-line sale /
receipt envelopes (:mod:`benchmarks.workload`) once, and then, ``--runs`` times (default 3), for each mode:

* ``at_least_once``: our design in small, buckets carry per-input offsets (:mod:`benchmarks.faust_buckets`);
* ``exactly_once``: the same app, Faust's transactions instead of the offsets;
* ``at_least_once, no offsets``: the control, neither (what a kill does to a plain at-least-once table);

1. **ingest**: one worker (its own group and changelog) from the first batch to the last line applied, and
   to its commit (the flush, then the offsets or the transaction); changelog records read back
   (read_committed);
2. **kill**: a new worker killed with SIGKILL halfway through (at half the ingest run's time), restarted at
   once on an empty data dir (memory store): **recovery** = restart to its first batch (group join, table
   restored from the changelog), and to the final answer; then whether the final state is exact: Σ qty of
   every SKU in the worker's table and in its changelog (read_committed) against the producer's arithmetic.

Beside them, the plain aiokafka read of the same topics (:func:`benchmarks.rig.plain_read`) in every run,
and once: :mod:`benchmarks.eos_ownership`, what an exactly_once agent does when it sends to a partition it
does not own. Medians and the spread (min-max) are printed and written to ``.ats/bench/eos-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from availability import topics
from availability.settings import load_settings
from streams import embedded
from streams.kafka import KafkaUnavailable, start_kafka

from . import eos_ownership
from . import rig as rigs
from . import workload as workloads
from .faust_buckets import changelog_topic

#: name → (processing_guarantee, buckets carry input offsets)
MODES = {
    "at_least_once": ("at_least_once", True),
    "exactly_once": ("exactly_once", False),
    "at_least_once, no offsets": ("at_least_once", False),
}
POLL_S = 0.02


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eos", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000, help="lines to produce (default 200,000)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="passes over every mode (default 3)")
    parser.add_argument("--flush", type=float, default=1.0, help="flush (and commit) interval, s (default 1)")
    parser.add_argument("--no-kill", action="store_true", help="ingest only: no kill-and-restart runs")
    parser.add_argument("--mode", action="append", choices=list(MODES), help="only this mode (repeatable)")
    parser.add_argument("--no-ownership", action="store_true", help="skip the send-to-another-partition experiment")
    parser.add_argument("--ownership-wait", type=float, default=eos_ownership.WAIT_S,
                        help="how long the experiment watches a routed leg without a crash (default 75 s)")
    return parser.parse_args(argv)


@dataclass
class Kafka:
    url: str
    root: Path

    @property
    def bootstrap(self) -> list[str]:
        return [self.url.removeprefix("kafka://")]


@contextlib.contextmanager
def kafka(root: Path) -> Iterator[Kafka]:
    server = start_kafka(root / "kafka", cache_dir=Path(os.environ.get("ATS_DATA_DIR", ".ats")).resolve())
    try:
        yield Kafka(server.url, root)
    finally:
        server.stop()


async def create_topics(bootstrap: list[str], names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def read_changelog(bootstrap: list[str], topic: str, partitions: int) -> tuple[int, dict[str, int]]:
    """(records, Σ qty per SKU of the last value of every key), read_committed to the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(tps)  # the last stable offsets, read_committed
        records, latest = 0, {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).values():
                records += len(batch)
                latest.update((record.key, record.value) for record in batch)
        totals: dict[str, int] = {}
        for value in latest.values():
            for sku, qty in orjson.loads(value or b'{"q":{}}')["q"].items():
                totals[sku] = totals.get(sku, 0) + qty
        return records, totals
    finally:
        await consumer.stop()


def expected_totals(workload: workloads.Workload) -> dict[str, int]:
    expected = dict(workload.on_hand)
    for topic, _, sku, _ in workload.sentinels:
        expected[sku] = workloads.SIGN[topics.INPUT_TOPICS[topic]]
    return expected


def mismatch(expected: dict[str, int], got: dict[str, int]) -> dict[str, int]:
    """SKUs whose Σ qty differs, and by how many units in all (0 and 0: exact)."""
    skus = [sku for sku in expected.keys() | got.keys() if expected.get(sku, 0) != got.get(sku, 0)]
    return {"skus": len(skus), "units": sum(abs(expected.get(s, 0) - got.get(s, 0)) for s in skus)}


class Worker:
    """One ``python -m benchmarks.faust_buckets`` process and its status file."""

    def __init__(self, cluster: Kafka, mode: str, app_id: str, workload: workloads.Workload, partitions: int,
                 flush_s: float, attempt: str) -> None:
        guarantee, watermarks = MODES[mode]
        home = cluster.root / app_id / attempt
        home.mkdir(parents=True)
        self.status, self.state, self.log_path = home / "status.jsonl", home / "state.json", home / "worker.log"
        config = {"broker": cluster.url, "app_id": app_id, "guarantee": guarantee, "watermarks": watermarks,
                  "partitions": partitions, "topics": list(workloads.TOPICS), "sentinels": workload.sentinels,
                  "flush_s": flush_s, "datadir": str(home / "data"), "status": str(self.status),
                  "state": str(self.state)}
        (home / "config.json").write_text(json.dumps(config))
        with self.log_path.open("ab") as log:
            self.started = time.monotonic()
            self.process = embedded.child_process(
                [sys.executable, "-m", "benchmarks.faust_buckets", str(home / "config.json")], log=log,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})

    def events(self) -> list[dict[str, Any]]:
        if not self.status.exists():
            return []
        return [json.loads(line) for line in self.status.read_text().splitlines() if line.endswith("}")]

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e["event"] == event]
            if found:
                return found[0]
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                why = "timed out" if self.process.poll() is None else f"exited {self.process.returncode}"
                raise RuntimeError(f"worker {self.process.pid}: no {event!r} ({why}):\n{tail}")
            time.sleep(POLL_S)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        embedded.stop_process(self.process, timeout=5.0)


def to_the_end(worker: Worker, cluster: Kafka, app_id: str, partitions: int,
               expected: dict[str, int]) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """Wait for the worker's first batch and final answer, stop it, and check its state and its changelog:
    (first, done, figures)."""
    try:
        first = worker.wait("first", 180)["t"]
        done = worker.wait("done", 600)
    finally:
        worker.stop()
    records, durable = asyncio.run(read_changelog(cluster.bootstrap, changelog_topic(app_id), partitions))
    served = {k: int(v) for k, v in orjson.loads(worker.state.read_bytes()).items()}
    return first, done, {"changelog_records": records, "served_mismatch": mismatch(expected, served),
                         "changelog_mismatch": mismatch(expected, durable)}


def ingest(cluster: Kafka, mode: str, app_id: str, workload: workloads.Workload, args: argparse.Namespace,
           expected: dict[str, int]) -> dict[str, Any]:
    worker = Worker(cluster, mode, app_id, workload, args.partitions, args.flush, "run")
    first, done, checked = to_the_end(worker, cluster, app_id, args.partitions, expected)
    flushes = [e for e in worker.events() if e["event"] == "flushed"]
    return {"lines_per_s": round(workload.lines / (done["applied"] - first)),
            "lines_per_s_incl_commit": round(workload.lines / (done["committed"] - first)),
            "start_to_first_s": round(first - worker.started, 2), "applying_s": round(done["applied"] - first, 2),
            "flushes": len(flushes),  # and where their time went:
            **{key: round(sum(e[key] for e in flushes), 2) for key in ("write_s", "deliver_s", "commit_s")},
            **checked}


def kill_and_restart(cluster: Kafka, mode: str, app_id: str, workload: workloads.Workload,
                     args: argparse.Namespace, expected: dict[str, int], kill_after: float) -> dict[str, Any]:
    victim = Worker(cluster, mode, app_id, workload, args.partitions, args.flush, "killed")
    try:
        victim.wait("first", 180)
        time.sleep(kill_after)
    finally:
        victim.kill()
    flushed = [e["lines"] for e in victim.events() if e["event"] == "flushed"]
    late = any(e["event"] == "done" for e in victim.events())
    worker = Worker(cluster, mode, app_id, workload, args.partitions, args.flush, "restarted")
    first, done, checked = to_the_end(worker, cluster, app_id, args.partitions, expected)
    return {"killed_after_s": round(kill_after, 2), "killed_after_flushes": len(flushed),
            "killed_after_lines_flushed": flushed[-1] if flushed else 0, "kill_too_late": late,
            "recovery_s": round(first - worker.started, 2),
            "restart_to_done_s": round(done["committed"] - worker.started, 2), **checked}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    workload = workloads.build(args.lines, 50, args.partitions)
    expected = expected_totals(workload)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ats-bench-eos-") as scratch, kafka(Path(scratch)) as cluster:
        asyncio.run(create_topics(cluster.bootstrap, list(workloads.TOPICS), args.partitions))
        asyncio.run(workloads.produce(cluster.bootstrap, workload))
        settings = load_settings({"ATS_BROKER_URL": cluster.url, "ATS_PARTITIONS": str(args.partitions),
                                  "ATS_DATA_DIR": scratch})
        plain_rig = rigs.Rig(settings, Path(scratch))
        ownership = None if args.no_ownership else eos_ownership.run(cluster.url, cluster.root, args.ownership_wait)
        modes = args.mode or list(MODES)
        for index in range(args.runs):
            read_lines, read_s = asyncio.run(rigs.plain_read(plain_rig, workloads.TOPICS,
                                                              len(workload.messages) + len(workload.sentinels)))
            run: dict[str, Any] = {"plain_read_lines_per_s": round(read_lines / read_s)}
            for mode in modes[index % len(modes):] + modes[:index % len(modes)]:  # rotate the order
                tag = f"bench-eos-{list(MODES).index(mode)}-{index}"
                figures = ingest(cluster, mode, f"{tag}-ingest", workload, args, expected)
                print(f"  run {index + 1} {mode}: {figures}", flush=True)
                if not args.no_kill:
                    kill_after = 0.5 * workload.lines / figures["lines_per_s"]
                    figures["kill"] = kill_and_restart(cluster, mode, f"{tag}-kill", workload, args, expected,
                                                       kill_after)
                    print(f"  run {index + 1} {mode}, kill: {figures['kill']}", flush=True)
                run[mode] = figures
            runs.append(run)
    return summarize(args, workload, runs, ownership)


def summarize(args: argparse.Namespace, workload: workloads.Workload, runs: list[dict[str, Any]],
              ownership: dict[str, Any] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"plain_read_lines_per_s": spread([r["plain_read_lines_per_s"] for r in runs])}
    for mode in [m for m in MODES if m in runs[0]]:
        ones = [r[mode] for r in runs]
        row = {key: spread([r[key] for r in ones])
               for key in ("lines_per_s", "lines_per_s_incl_commit", "start_to_first_s", "changelog_records")}
        row["exact"] = sum(r["served_mismatch"]["skus"] == 0 and r["changelog_mismatch"]["skus"] == 0 for r in ones)
        if not args.no_kill:
            kills = [r["kill"] for r in ones]
            row["recovery_s"] = spread([k["recovery_s"] for k in kills])
            row["restart_to_done_s"] = spread([k["restart_to_done_s"] for k in kills])
            row["exact_after_kill"] = sum(k["served_mismatch"]["skus"] == 0 and k["changelog_mismatch"]["skus"] == 0
                                          for k in kills)
            row["kills_too_late"] = sum(k["kill_too_late"] for k in kills)
        summary[mode] = row
    return {"lines": workload.lines, "messages": len(workload.messages), "partitions": args.partitions,
            "flush_s": args.flush, "runs": len(runs), "broker": "Apache Kafka 4.4 (KRaft, local)",
            "summary": summary, "per_run": runs, "ownership": ownership}


def _range(figure: dict[str, float], form: str) -> str:
    return f"({figure['min']:{form}}..{figure['max']:{form}})"


def report(figures: dict[str, Any]) -> None:
    summary = figures["summary"]
    plain = summary["plain_read_lines_per_s"]
    print(f"exactly_once vs at_least_once on Apache Kafka: {figures['lines']:,} lines in {figures['messages']:,} "
          f"envelopes, {figures['partitions']} partitions, flush and commit every {figures['flush_s']} s, "
          f"{figures['runs']} runs (median, min..max)")
    print(f"  baseline plain aiokafka read + orjson: {plain['median']:>10,.0f} lines/s {_range(plain, ',.0f')}")
    for mode in [m for m in MODES if m in summary]:
        row = summary[mode]
        rate, commit = row["lines_per_s"], row["lines_per_s_incl_commit"]
        line = (f"  {mode:<27} {rate['median']:>10,.0f} lines/s {_range(rate, ',.0f')}, "
                f"{rate['median'] / plain['median']:.3f} of the read, incl. commit {commit['median']:,.0f}; "
                f"changelog {row['changelog_records']['median']:,.0f} records; exact {row['exact']}/{figures['runs']}")
        if "recovery_s" in row:
            line += (f"; kill -9 → restart on an empty disk: applying after {row['recovery_s']['median']:.1f} s "
                     f"{_range(row['recovery_s'], '.1f')}, done after "
                     f"{row['restart_to_done_s']['median']:.1f} s, exact after the kill "
                     f"{row['exact_after_kill']}/{figures['runs']}")
        print(line)
    if figures["ownership"] is not None:
        eos_ownership.report(figures["ownership"])


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print; returns the figures, or ``{"not_run": why}`` without Java or Maven."""
    args = arguments(argv)
    try:
        figures = measure(args)
    except KafkaUnavailable as exc:
        print(f"not run: {exc}")
        return {"not_run": str(exc)}
    report(figures)
    return figures


def main(argv: list[str] | None = None) -> None:
    figures = run(argv)
    if "not_run" not in figures:
        print(f"  written to {rigs.write_result('eos', figures)}")


if __name__ == "__main__":
    main()
