"""Was the product healthy through a run? The soak's three questions, answered from what a run sampled.

* **Memory flat**: each worker's resident memory (from the snapshot it publishes every tick) over the
  second half of the load: the median of its last few samples against the median of its first few
  grew by at most ``max(FLAT_MIB, FLAT_SHARE * the first)``. The first half is the warm-up (the
  assortment's positions appear as they first sell); what remains is the state a worker keeps for a
  bounded time (event ids within ``ATS_DEDUPE_WINDOW_SECONDS``, ERP windows), which a leak is not.
* **Lag bounded**: the records produced and not committed by the engine's group, over the second half
  of the load, never exceeded ``LAG_PEAK_SECONDS`` of the load's mean message rate (a flash sale doubles
  the rate for half a minute: a worker near its capacity falls behind by that much and catches up),
  were at most ``LAG_SECONDS`` of it at the end of the load (the median of its last ``ENDS`` samples:
  a worker that falls further behind all along ends there), and the run drained.
* **No error logs**: the records the workers logged at ERROR or above during the run (their
  ``ats_worker_error_logs_total``, published with the snapshot) add up to 0.

Pure: the simulator samples, this judges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

#: growth allowed over the second half of the load: this many MiB, or this share of the RSS, the larger
FLAT_MIB = 64.0
FLAT_SHARE = 0.10
#: lag allowed at the end of the load, and at any time in its second half, in seconds of the mean message rate
LAG_SECONDS = 10.0
LAG_PEAK_SECONDS = 30.0
#: samples taken together at each end of the second half (one a second)
ENDS = 5

#: one worker's samples: (run time s, RSS MiB or None, error log records so far)
WorkerSample = tuple[float, float | None, int]


def judge(*, load_s: float, messages: int, drained: bool, lag: Sequence[tuple[float, int]],
          workers: Mapping[str, Sequence[WorkerSample]]) -> dict[str, Any]:
    half = load_s / 2
    memory = {worker: _memory(samples, half, load_s) for worker, samples in sorted(workers.items())}
    rate = messages / load_s if load_s > 0 else 0.0
    bound, peak_bound = round(LAG_SECONDS * rate), round(LAG_PEAK_SECONDS * rate)
    late = [records for t, records in lag if half <= t <= load_s]
    max_late = max(late, default=None)
    at_end = median(late[-ENDS:]) if late else None
    errors = {worker: _errors(samples) for worker, samples in sorted(workers.items())}
    memory_flat = bool(memory) and all(m["flat"] for m in memory.values())
    lag_bounded = (drained and max_late is not None and at_end is not None and max_late <= peak_bound
                   and at_end <= bound)
    no_errors = bool(workers) and sum(errors.values()) == 0
    return {
        "memory": {"flat": memory_flat, "rule": f"growth over the second half of the load ≤ max({FLAT_MIB:g} MiB, "
                                                f"{FLAT_SHARE:.0%})", "workers": memory},
        "lag": {"bounded": lag_bounded, "max_second_half_records": max_late, "peak_bound_records": peak_bound,
                "at_load_end_records": at_end, "bound_records": bound, "drained": drained,
                "rule": f"second half ≤ {LAG_PEAK_SECONDS:g} s and load end ≤ {LAG_SECONDS:g} s of the load's mean "
                        "message rate, and drained"},
        "error_logs": {"none": no_errors, "workers": errors},
        "healthy": memory_flat and lag_bounded and no_errors,
    }


def _memory(samples: Sequence[WorkerSample], half: float, load_s: float) -> dict[str, Any]:
    rss = [mib for t, mib, _ in samples if half <= t <= load_s and mib is not None]
    every = [mib for _, mib, _ in samples if mib is not None]
    if len(rss) < 2 * ENDS:
        return {"flat": False, "reason": f"{len(rss)} samples in the second half of the load",
                "max_mib": round(max(every), 1) if every else None}
    start, end = median(rss[:ENDS]), median(rss[-ENDS:])
    allowed = max(FLAT_MIB, FLAT_SHARE * start)
    return {"flat": end - start <= allowed, "start_mib": round(start, 1), "end_mib": round(end, 1),
            "growth_mib": round(end - start, 1), "allowed_mib": round(allowed, 1), "max_mib": round(max(every), 1)}


def _errors(samples: Sequence[WorkerSample]) -> int:
    """Error records logged between a worker's first and last sample (a restart starts its count at 0)."""
    total, previous = 0, None
    for _, _, count in samples:
        if previous is not None:
            total += count - previous if count >= previous else count
        previous = count
    return total
