"""Memory: a worker's RSS with 1M positions and 10M remembered event ids (RocksDB store).

``python -m benchmarks.memory [--positions N] [--ids M]``, on the embedded broker and cache, one worker
(``ATS_STORE=rocksdb``); after each step (applied, then flushed to the changelog, then 3 s of quiet) its
RSS (``VmRSS``) and its peak RSS so far (``VmHWM``, what a container's memory limit meets):

1. **baseline**: the worker joined, with an empty state (one sentinel event per partition applied);
2. M one-line receipts (default 1,000,000), each its own event id, on a small state, in two halves: MiB
   per million remembered ids from the second half (first, while the heap is small: after the positions
   the allocator reuses what their ingest freed, and RSS even fell while ids were added). The first half
   also grows what the worker's first busy seconds grow whatever it applies (RocksDB memtables, the
   producer's and the consumer's buffers, the allocator's free lists), which the second half finds there:
   extrapolated 49-fold, that warm-up counted as a cost per id;
3. N positions (default 1,000,000) in two halves (1,000-line receipt envelopes, one location each):
   MiB per 100k positions.

10M event ids through the broker would take ten minutes or more here (single events run at ~15,000 to
20,000/s), so the figure at 1M positions and 10M ids is **extrapolated** linearly: the RSS measured with
N positions and M ids, plus (10M - M) times the growth per id (the second half's), plus (1M - N) times the
growth per position. As a cross-check the dedupe structure alone (:class:`availability.dedupe.RecentIds`)
is measured in-process with tracemalloc for 1M ids of the same shape. Target (issue 6): <= 2 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import tracemalloc
from typing import Any

from availability.dedupe import RecentIds, id_hash
from streams import embedded

from . import positions
from . import rig as rigs
from .workload import Workload

TARGET_MIB = 2048.0
TARGET_POSITIONS, TARGET_IDS = 1_000_000, 10_000_000


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=TARGET_POSITIONS, help="positions (default 1M)")
    # over 200k ids the second half's growth (~20 MiB) is within the allocator's noise: slopes of 181-193 MiB
    # per million in two runs the same hour, against 38-70 over the second 500k of 1M
    parser.add_argument("--ids", type=int, default=1_000_000, help="remembered event ids to add (default 1M)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    parser.add_argument("--store", default="rocksdb", choices=("rocksdb", "memory"),
                        help="the worker's table store (default rocksdb, the figure's; memory: to compare)")
    return parser.parse_args(argv)


def recent_ids_bytes(count: int = 1_000_000) -> float:
    """Python heap bytes per id of :class:`RecentIds` holding ``count`` sealed ids (generations of 2,000)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ids = RecentIds(7 * 86_400_000)
    for index in range(count):
        ids.add(id_hash(f"ids-bench-{index:09d}"))
        if index % 2_000 == 1_999:
            ids.seal(index // 2_000, 0)
    ids.seal(count, 0)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del ids
    return used / count


def measure(count: int, ids: int, partitions: int, store: str) -> dict[str, Any]:
    halves = [positions.build(count // 2, partitions),
              positions.build(count - count // 2, partitions, first=count // 2 // positions.SKUS_PER_LOCATION)]
    with rigs.rig(partitions) as rig:
        worker = rigs.spawn_worker(rig, store=store)
        try:
            produced: list[Workload] = []

            def step(workload: Workload) -> tuple[float, float, float]:
                """Produce, wait until applied and flushed, then quiet; (seconds to applied, RSS, peak RSS)."""
                produced.append(workload)
                applied_s = asyncio.run(positions.produce_and_wait(rig, workload, worker))
                asyncio.run(positions.until_flushed(rig, positions.input_ends(produced, partitions), worker))
                return applied_s, positions.settle_rss(worker.pid), positions.rss_mb(worker.pid, "VmHWM")

            steps = {"empty": step(positions.sentinels_only(partitions, "warm")),
                     "ids_half": step(positions.event_ids(ids // 2, partitions, "m")),
                     "ids": step(positions.event_ids(ids - ids // 2, partitions, "n"))}
            steps["half"] = step(halves[0])
            steps["full"] = step(halves[1])
        finally:
            embedded.stop_process(worker, timeout=60)
    applied = sum(half.lines for half in halves)
    rss = {name: figures[1] for name, figures in steps.items()}
    per_million_ids = (rss["ids"] - rss["ids_half"]) / (ids - ids // 2) * 1_000_000
    per_100k_positions = (rss["full"] - rss["ids"]) / applied * 100_000
    estimate = (rss["full"] + per_million_ids * (TARGET_IDS - ids) / 1_000_000
                + per_100k_positions * (TARGET_POSITIONS - applied) / 100_000)
    return {
        "positions": applied, "ids": ids, "partitions": partitions, "store": store,
        **{f"rss_{name}_mib": round(value) for name, value in rss.items()},
        **{f"peak_rss_{name}_mib": round(figures[2]) for name, figures in steps.items()},
        "mib_per_million_ids": round(per_million_ids, 1),
        "mib_per_million_ids_first_half": round((rss["ids_half"] - rss["empty"]) / (ids // 2) * 1_000_000, 1),
        "ids_per_s": round((ids - ids // 2) / steps["ids"][0]),
        "mib_per_100k_positions": round(per_100k_positions, 1),
        "mib_per_100k_positions_first_half": round((rss["half"] - rss["ids"]) / halves[0].lines * 100_000, 1),
        "recent_ids_heap_bytes_per_id": round(recent_ids_bytes()),
        "estimate_1m_positions_10m_ids_mib": round(estimate),
        "extrapolated": applied < TARGET_POSITIONS or ids < TARGET_IDS,
        "target_mib": TARGET_MIB, "met": max(estimate, steps["full"][2]) <= TARGET_MIB,
        "worker_tuning": rigs.tuning(),
    }


def report(figures: dict[str, Any]) -> None:
    print(f"memory: one worker, {figures['store']} store, {figures['partitions']} partitions; RSS (peak so far)")
    print(f"  baseline: empty state                        {figures['rss_empty_mib']:>7,} MiB "
          f"({figures['peak_rss_empty_mib']:,})")
    print(f"  after {figures['ids'] // 2:>9,} event ids                   {figures['rss_ids_half_mib']:>7,} MiB "
          f"({figures['peak_rss_ids_half_mib']:,})   {figures['mib_per_million_ids_first_half']} MiB per million ids "
          f"(the worker's warm-up included)")
    print(f"  after {figures['ids']:>9,} event ids                   {figures['rss_ids_mib']:>7,} MiB "
          f"({figures['peak_rss_ids_mib']:,})   {figures['mib_per_million_ids']} MiB per million ids "
          f"({figures['ids_per_s']:,} events/s; RecentIds alone {figures['recent_ids_heap_bytes_per_id']} B/id "
          f"by tracemalloc)")
    print(f"  and {figures['positions'] // 2:>9,} positions                 {figures['rss_half_mib']:>7,} MiB "
          f"({figures['peak_rss_half_mib']:,})   {figures['mib_per_100k_positions_first_half']} MiB per 100k")
    print(f"  and {figures['positions']:>9,} positions                 {figures['rss_full_mib']:>7,} MiB "
          f"({figures['peak_rss_full_mib']:,})   {figures['mib_per_100k_positions']} MiB per 100k positions")
    how = "EXTRAPOLATED linearly" if figures["extrapolated"] else "measured"
    print(f"  1M positions + 10M event ids ({how}): {figures['estimate_1m_positions_10m_ids_mib']:>7,} MiB   "
          f"(target <= {TARGET_MIB:,.0f} MiB, peak included: {'met' if figures['met'] else 'missed'})")
    rigs.print_tuning(figures)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print; returns the figures (``make bench`` writes them with the others)."""
    args = arguments(argv)
    figures = measure(args.positions, args.ids, args.partitions, args.store)
    report(figures)
    return figures


if __name__ == "__main__":
    rigs.script("memory", run)
