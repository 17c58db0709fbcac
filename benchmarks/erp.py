"""The ERP netting ratio (raw on-hand lines ÷ postings) on the peak-day profile of :mod:`benchmarks.domain`:
50-line POS envelopes (80 % sales), Zipf-popular SKUs over 20,000 SKUs and 200 stores, business times
spread over a peak trading day, 300 s windows. Also the cost of netting: lines/s through the domain with
windows closing on ticks, beside the same run with the ERP window so long that nothing closes.
"""

from __future__ import annotations

import time

from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.validation import validate_event

from .domain import envelopes

HOUR_S = 3_600
ROUTED = 7  # any input code: ticks only need an offset of their own


def run(payloads: list[bytes], window_ms: int, tick_every_s: int) -> tuple[int, int, float]:
    """Apply every envelope, tick the clock along business time; returns (lines, postings, seconds)."""
    state = PartitionState(0, horizon_ms=86_400_000, dedupe_window_ms=7 * 86_400_000, window_ms=window_ms,
                           grace_ms=60_000)
    lines = postings = 0
    next_tick = None
    ticks = 0
    started = time.perf_counter()
    for offset, raw in enumerate(payloads):
        event = validate_event(raw)
        at = int(event.occurred_at.timestamp() * 1000)
        if next_tick is None:
            next_tick = at
        while at >= next_tick:  # the wall clock keeps pace with business time
            state.tick(next_tick, Source(ROUTED, ticks))
            ticks += 1
            next_tick += tick_every_s * 1000
        for leg in legs(event):
            state.apply(event, leg, Source(0, offset), at)
        lines += len(event.lines)
        if offset % 500 == 499 and (flush := state.drain(at)) is not None:
            postings += len(flush.postings)
            state.confirm(flush.postings)
    state.tick((next_tick or 0) + 86_400_000, Source(ROUTED, ticks))  # close the day
    flush = state.drain(0)
    postings += len(flush.postings) if flush else 0
    return lines, postings, time.perf_counter() - started


def main(count: int = 4_000, lines_per_envelope: int = 50, day_hours: int = 12) -> None:
    payloads = envelopes(count, lines_per_envelope, spread_seconds=day_hours * HOUR_S)
    lines, postings, seconds = run(payloads, 300_000, 60)
    _, _, baseline = run(payloads, 86_400_000 * 30, 60)  # nothing closes: netting bookkeeping only
    print(f"peak day: {lines:,} lines over {day_hours} h, 200 stores, 20,000 SKUs, 300 s windows")
    print(f"postings: {postings:,}   netting ratio (lines ÷ postings): {lines / postings:.2f}")
    print(f"domain with windows closing: {lines / seconds:12,.0f} lines/s   "
          f"(never closing: {lines / baseline:,.0f} lines/s)")
    busy = envelopes(count, lines_per_envelope, spread_seconds=HOUR_S)
    lines, postings, _ = run(busy, 300_000, 60)
    print(f"peak hour (same lines in 1 h): netting ratio {lines / postings:.2f}")


if __name__ == "__main__":
    main()
