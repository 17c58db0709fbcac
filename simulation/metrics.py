"""What a run measures, second by second: rates, latencies, freshness, lag.

Latencies are kept whole (a 120 s run holds a few hundred thousand floats): percentiles are exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    """count, p50, p90, p99, max (milliseconds in, milliseconds out)."""
    out: dict[str, Any] = {"count": len(values)}
    for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        value = percentile(values, share)
        out[f"{name}_ms"] = None if value is None else round(value, digits)
    out["max_ms"] = round(max(values), digits) if values else None
    return out


@dataclass
class Second:
    """One wall second of the run."""

    lines: int = 0  # lines produced (duplicates included: the engine reads them)
    messages: int = 0
    reads: list[float] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)
    errors: int = 0
    lag: int | None = None


class Metrics:
    def __init__(self) -> None:
        self.seconds: dict[int, Second] = defaultdict(Second)
        self.reads: list[float] = []
        self.read_status: dict[int, int] = defaultdict(int)
        self.reads_skipped = 0
        self.holds: list[float] = []  # decided: 201 held, 409 rejected
        self.hold_answers: list[float] = []  # every answer, 504 (no decision in time) included
        self.hold_status: dict[int, int] = defaultdict(int)
        self.releases: list[float] = []
        self.holds_skipped = 0
        self.freshness: list[float] = []
        self.probes_sent = 0
        self.lines = 0
        self.messages = 0
        self.lag: list[tuple[float, int]] = []  # (run time, records produced and not committed by the engine)
        self.heartbeat_lag: list[tuple[float, int]] = []  # (run time, Σ lag the workers' heartbeats report)
        #: per worker (its stats key): (run time, RSS MiB, error log records so far)
        self.workers: dict[str, list[tuple[float, float | None, int]]] = defaultdict(list)

    def produced(self, at: float, lines: int) -> None:
        second = self.seconds[int(at)]
        second.lines += lines
        second.messages += 1
        self.lines += lines
        self.messages += 1

    def read(self, at: float, ms: float, status: int) -> None:
        self.read_status[status] += 1
        if status == 200:
            self.reads.append(ms)
            self.seconds[int(at)].reads.append(ms)
        else:
            self.seconds[int(at)].errors += 1

    def hold(self, at: float, ms: float, status: int) -> None:
        self.hold_status[status] += 1
        self.hold_answers.append(ms)
        if status in (201, 409):
            self.holds.append(ms)
            self.seconds[int(at)].holds.append(ms)
        else:
            self.seconds[int(at)].errors += 1

    def fresh(self, at: float, ms: float) -> None:
        self.freshness.append(ms)
        self.seconds[int(at)].freshness.append(ms)

    def lagged(self, at: float, records: int) -> None:
        self.lag.append((round(at, 2), records))
        self.seconds[int(at)].lag = records

    def worker(self, at: float, worker: str, rss_bytes: int | None, error_logs: int) -> None:
        self.workers[worker].append((round(at, 2), None if rss_bytes is None else round(rss_bytes / 2**20, 1),
                                     error_logs))

    def series(self, until: float, target: Callable[[float], float]) -> list[dict[str, Any]]:
        """One row per second, from 0 to ``until``; ``target``: lines/s the profile asks for at a run time."""
        rows = []
        for index in range(int(until) + 1):
            second = self.seconds.get(index, Second())
            rows.append({
                "t": index, "target_lines_per_s": round(target(index + 0.5)), "lines_per_s": second.lines,
                "messages_per_s": second.messages, "reads_per_s": len(second.reads), "holds_per_s": len(second.holds),
                "read_p50_ms": _round(percentile(second.reads, 0.5)),
                "read_p99_ms": _round(percentile(second.reads, 0.99)),
                "hold_p50_ms": _round(percentile(second.holds, 0.5)),
                "hold_p99_ms": _round(percentile(second.holds, 0.99)),
                "freshness_p50_ms": _round(percentile(second.freshness, 0.5)),
                "freshness_max_ms": _round(max(second.freshness) if second.freshness else None),
                "errors": second.errors, "lag_records": second.lag,
            })
        return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
