"""Running totals a worker keeps for operators, in the shape both processes share.

A worker counts into :class:`WorkerTotals` (plain integers: cheaper per event than a Prometheus collector,
and one snapshot serves both its ``/metrics`` and the console). It publishes :meth:`WorkerTotals.snapshot`
to the cache under ``topics.worker_stats_key``; the API sums the snapshots of every live worker with
:func:`merge` for ``GET /v1/ops/summary``. Totals only grow while a worker runs (a restart starts them
at 0 again, as Prometheus counters do): rates are differences between two reads.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


class BucketCounts:
    """A histogram's counts: ``counts[i]`` values ≤ ``bounds[i]`` (not cumulative), then the ones above all."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, values ≤ it)`` with ``inf`` last, as Prometheus exposes buckets."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)

    def to_wire(self) -> dict[str, Any]:
        return {"le": list(self.bounds), "counts": list(self.counts), "sum": self.total}


class WorkerTotals:
    """What one worker has done since it started (all counts), and the position gauges it last saw."""

    def __init__(self, freshness_bounds: Iterable[float], lateness_bounds: Iterable[float] = ()) -> None:
        self.events: Counter[tuple[str, str]] = Counter()  # (event type, result) → events
        self.dead_letters: Counter[str] = Counter()  # reason → records
        self.holds: Counter[str] = Counter()  # decision status → decisions
        self.postings: Counter[str] = Counter()  # movement type → postings
        self.posted_units: Counter[str] = Counter()  # movement type → Σ |qty|
        self.changes: Counter[str] = Counter()  # change feed kind → records
        self.cache_write_errors = 0
        self.error_logs = 0  # records the process logged at ERROR or above
        self.freshness = BucketCounts(freshness_bounds)
        self.lateness = BucketCounts(lateness_bounds)  # arrival - business time per input event (silent stores)

    def snapshot(self, *, worker: str, at: float, partitions: Iterable[int], lag: Mapping[str, int],
                 negative_on_hand: int, reserved_above_on_hand: int, rss_bytes: int | None = None) -> dict[str, Any]:
        events: dict[str, dict[str, int]] = {}
        for (kind, result), count in sorted(self.events.items()):
            events.setdefault(kind, {})[result] = count
        return {"worker": worker, "at": at, "partitions": sorted(partitions), "lag": dict(lag), "events": events,
                "dead_letters": dict(self.dead_letters), "holds": dict(self.holds),
                "postings": dict(self.postings), "cache_write_errors": self.cache_write_errors,
                "freshness": self.freshness.to_wire(), "lateness": self.lateness.to_wire(),
                "positions": {"negative_on_hand": negative_on_hand, "reserved_above_on_hand": reserved_above_on_hand},
                "process": {"rss_bytes": rss_bytes, "error_logs": self.error_logs}}


def merge(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of workers' snapshots: counts added, lag per ``topic/partition`` (each owned by one worker at a
    time; the larger wins while two claim it during a rebalance), freshness and lateness buckets added bound
    by bound."""
    events: dict[str, Counter[str]] = {}
    sums: dict[str, Counter[str]] = {"dead_letters": Counter(), "holds": Counter(), "postings": Counter(),
                                     "positions": Counter()}
    lag: dict[str, int] = {}
    workers, errors = [], 0
    freshness: dict[str, Any] | None = None
    lateness: dict[str, Any] | None = None
    for snap in snapshots:
        workers.append({"worker": snap["worker"], "at": snap["at"], "partitions": snap["partitions"],
                        **snap.get("process", {})})  # not from a worker of an older version
        for kind, results in snap["events"].items():
            events.setdefault(kind, Counter()).update(results)
        for name, counter in sums.items():
            counter.update(snap[name])
        for where, behind in snap["lag"].items():
            lag[where] = max(behind, lag.get(where, 0))
        errors += snap["cache_write_errors"]
        freshness = _add_buckets(freshness, snap["freshness"])
        if "lateness" in snap:  # not from a worker of an older version
            lateness = _add_buckets(lateness, snap["lateness"])
    return {"workers": workers, "events": {kind: dict(results) for kind, results in sorted(events.items())},
            **{name: dict(counter) for name, counter in sums.items()},
            "lag": {"total": sum(lag.values()), "partitions": dict(sorted(lag.items()))},
            "cache_write_errors": errors, "freshness": freshness or _NO_BUCKETS, "lateness": lateness or _NO_BUCKETS}


_NO_BUCKETS: dict[str, Any] = {"le": [], "counts": [], "sum": 0.0}


def _add_buckets(into: dict[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    if into is None:
        return {"le": list(more["le"]), "counts": list(more["counts"]), "sum": more["sum"]}
    if into["le"] != more["le"]:  # a worker of another version during a rolling upgrade: not comparable
        return into
    return {"le": into["le"], "counts": [a + b for a, b in zip(into["counts"], more["counts"], strict=True)],
            "sum": into["sum"] + more["sum"]}
