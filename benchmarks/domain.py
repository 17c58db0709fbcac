"""Lines/s through the pure domain (validation + PartitionState.apply + drain), beside the baseline of
parsing the same envelopes with orjson and summing quantities into a dict: the floor of any engine.

Workload as in ../shared/PEERS.md: 50-line POS sale/receipt envelopes, Zipf-popular SKUs over 20,000
SKUs and 200 locations.
"""

from __future__ import annotations

import gc
import itertools
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson

from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.validation import validate_event
from streams.worker import GC_THRESHOLDS

PEAK_START = datetime(2026, 11, 27, 10, tzinfo=UTC)  # Black Friday, 10:00


def envelopes(count: int, lines: int, seed: int = 7, *, spread_seconds: int = 0) -> list[bytes]:
    """The POS envelopes; ``spread_seconds``: their business times spread evenly over that many seconds."""
    rng = random.Random(seed)
    skus = [f"SKU-{i}" for i in range(20_000)]
    # cumulative once (``choices`` with plain weights re-sums all 20,000 each call; same draws either way)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(skus))))
    out = []
    for index in range(count):
        chosen = rng.choices(skus, cum_weights=cumulative, k=lines)
        kind = "sale" if rng.random() < 0.8 else "receipt"
        out.append(orjson.dumps({
            "event_id": f"e-{index}", "type": kind, "occurred_at": _at(index * spread_seconds // count),
            "location_id": f"S-{rng.randrange(200)}", "lines": [{"sku": s, "qty": 1} for s in chosen]}))
    return out


def _at(offset_seconds: int) -> str:
    return (PEAK_START + timedelta(seconds=offset_seconds)).isoformat().replace("+00:00", "Z")


def main(count: int = 4_000, lines: int = 50) -> None:
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    payloads = envelopes(count, lines)
    total = count * lines

    started = time.perf_counter()
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for raw in payloads:
        body = orjson.loads(raw)
        for line in body["lines"]:
            totals[(line["sku"], body["location_id"])] += line["qty"]
    baseline = total / (time.perf_counter() - started)

    # alternated, best of three each, in CPU time: the machine is shared
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for history in (False, True):
            runs[history].append(_apply(payloads, history=history))
    without, with_history = total / min(runs[False]), total / min(runs[True])
    print(f"baseline (orjson + dict): {baseline:12,.0f} lines/s")
    print(f"domain (validate, apply): {without:12,.0f} lines/s   ratio {without / baseline:.3f}")
    print(f"  with position history:  {with_history:12,.0f} lines/s   {with_history / without:.2f} of without")


def _apply(payloads: list[bytes], *, history: bool) -> float:
    """Seconds to validate and apply every payload, draining every 500 as the worker flushes; with
    ``history``, also recording the position history the worker writes to the cache."""
    now_ms = 1_795_521_600_000
    state = PartitionState(0, horizon_ms=86_400_000, dedupe_window_ms=7 * 86_400_000, history=history)
    started = time.process_time()
    for offset, raw in enumerate(payloads):
        event = validate_event(raw)
        for leg in legs(event):
            state.apply(event, leg, Source(0, offset), now_ms)
        if offset % 500 == 499:
            _drain(state, now_ms)
    _drain(state, now_ms)
    return time.process_time() - started


def _drain(state: PartitionState, now_ms: int) -> None:
    flush = state.drain(now_ms)
    if flush is not None:
        state.confirm_changes(flush.changes)  # as the worker does once it has sent them (the feed's outbox)

if __name__ == "__main__":
    main()
