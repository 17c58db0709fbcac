"""The ERP netting ratio (raw on-hand lines ÷ postings), 300 s windows, through the pure domain:

* on the peak-day **simulation** profile (``ats simulate --profile black-friday``, :mod:`simulation`): the
  day's whole event mix (POS baskets, returns, store deliveries, DC→store transfers, counts with offline
  tills replaying late, ecommerce sales, duplicates) in the order the simulator produces it, business time
  compressed as in a 120 s run; raw lines are the day's own on-hand movement lines, postings those of the
  day's windows (opening stock, posted in the windows before the day, is left out of both);
* on the envelope profile of :mod:`benchmarks.domain`: 50-line POS envelopes (80 % sales), Zipf-popular
  SKUs over 20,000 SKUs and 200 stores, business times spread over a peak trading day.

Also the cost of netting: lines/s through the domain with windows closing on ticks, beside the same run
with the ERP window so long that nothing closes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from availability.netting import Posting
from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.validation import validate_event
from simulation.day import MOVEMENT_KINDS, Day
from simulation.offline import play
from simulation.profiles import PROFILES

from .domain import PEAK_START, envelopes

HOUR_S = 3_600
ROUTED = 7  # any input code: ticks only need an offset of their own


def run(payloads: list[bytes], window_ms: int, tick_every_s: int, *, since_ms: int | None = None,
        drain_every: int = 500) -> tuple[int, int, float]:
    """Apply every event, tick the clock along business time; returns (lines, postings, seconds).
    ``since_ms``: count only the postings of windows starting then or later. ``drain_every``: events
    between flushes (windows close on ticks either way; a flush only collects their postings)."""
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
        if offset % drain_every == drain_every - 1 and (flush := state.drain(at)) is not None:
            postings += _counted(flush.postings, since_ms)
            state.confirm(flush.postings)
    state.tick((next_tick or 0) + 86_400_000, Source(ROUTED, ticks))  # close the day
    flush = state.drain(0)
    postings += _counted(flush.postings, since_ms) if flush else 0
    return lines, postings, time.perf_counter() - started


def _counted(postings: list[Posting], since_ms: int | None) -> int:
    return len(postings) if since_ms is None else sum(1 for p in postings if p.window_start_ms >= since_ms)


def peak_day(profile: str = "black-friday", seed: int = 1) -> dict[str, Any]:
    """The netting ratio of the simulator's peak day, played offline (holds decided by its own book)."""
    day = Day(PROFILES[profile], seed=seed, tag="bench", start_ms=int(PEAK_START.timestamp() * 1000))
    produced, _ = play(day)
    payloads = [orjson.dumps(p.event) for p in produced]
    # Flushes far apart: each re-serializes whole buckets, positions' logs included (a store's hot
    # positions carry every movement since their count), which at 500 events made this take ~10 min.
    _, postings, seconds = run(payloads, 300_000, 60, since_ms=day.start_ms, drain_every=50_000)
    raw = sum(day.mix[kind][1] for kind in MOVEMENT_KINDS if kind in day.mix)
    return {"profile": profile, "seed": seed, "events": len(payloads), "raw_lines": raw, "postings": postings,
            "netting_ratio": round(raw / postings, 3), "domain_s": round(seconds, 1),
            "business_hours": day.profile.day_hours}


def main(count: int = 4_000, lines_per_envelope: int = 50, day_hours: int = 12) -> dict[str, Any]:
    simulated = peak_day()
    print(f"peak-day simulation profile ({simulated['profile']}, {simulated['business_hours']} h, seed "
          f"{simulated['seed']}): {simulated['raw_lines']:,} lines, {simulated['postings']:,} postings, "
          f"netting ratio {simulated['netting_ratio']:.2f}")
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
    return simulated


if __name__ == "__main__":
    main()
