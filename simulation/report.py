"""The run's report: ``report.json`` and PNG charts (matplotlib, headless Agg) in the report directory, and
the summary table printed at the end."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import health
from .metrics import summary

CHARTS = ("rates.png", "latency.png", "lag.png", "memory.png")


def build(run: Any, checked: dict[str, Any], *, seed: int, stack: str) -> dict[str, Any]:
    """Everything a run measured, as one JSON-able document."""
    metrics, day = run.metrics, run.day
    drain = checked["drain"]
    load_s = run.timings["load_s"]
    lines = metrics.lines
    applied_s = drain["applied_s"]
    lags = [records for _, records in metrics.lag]
    left = metrics.lag[-1][1] if metrics.lag and not drain["drained"] else 0
    drain_rate = _falling(metrics.lag, load_s)
    return {
        "profile": day.profile.as_dict(),
        "run": {"tag": day.tag, "seed": seed, "stack": stack, "api": run.target.api_url,
                "partitions": run.target.partitions, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "business_day_start": datetime.fromtimestamp(day.start_ms / 1000, tz=UTC).isoformat(),
                "machine": {"nproc": len(os.sched_getaffinity(0)), "python": platform.python_version()},
                **run.timings},
        "produced": {"messages": metrics.messages, "lines": lines,
                     "mix": {kind: {"events": events, "lines": count}
                             for kind, (events, count) in sorted(day.mix.items())}},
        "throughput": {
            "target_lines_per_s": round(day.profile.lines_per_s * day.profile.mean_rate),
            "produced_lines_per_s": round(lines / load_s) if load_s else None,
            # every line produced during the load was applied when the last end sentinel was in the cache
            "applied_lines_per_s": round(lines / applied_s) if applied_s else None,
            "load_s": load_s, "all_applied_at_s": applied_s, "drained": drain["drained"],
            "sentinels_not_applied": drain["sentinels_not_applied"],
            "behind_at_load_end_s": round(applied_s - load_s, 2) if applied_s else None,
            # not drained: what the lag says instead (records are messages: x the mean lines per message)
            "lag_left_records": left,
            "drain_records_per_s": drain_rate,
            "estimated_drain_left_s": round(left / drain_rate) if left and drain_rate else None,
            "applied_lines_per_s_from_lag": _applied_from_lag(metrics),
        },
        # records this run produced beyond the engine group's committed offsets (the workers' own view,
        # from their heartbeats, is in heartbeat_lag_series: an overloaded worker under-reports it)
        "lag": {"max_records": max(lags, default=None), "at_load_end_records": _lag_at(metrics.lag, load_s),
                "samples": len(lags),
                "heartbeat_max_records": max((r for _, r in metrics.heartbeat_lag), default=None)},
        # probes never seen are not in the percentiles: the oldest one unseen says how stale the answers were
        "freshness": {"probes_sent": metrics.probes_sent, "probes_seen": run.probes_seen,
                      "oldest_unseen_ms": run.oldest_unseen_ms(), **summary(metrics.freshness)},
        "api": {"reads": {**summary(metrics.reads), "rps": round(len(metrics.reads) / load_s, 1) if load_s else None,
                          "http_status": {str(k): v for k, v in sorted(metrics.read_status.items())},
                          "skipped_client_busy": metrics.reads_skipped}},
        "holds": checked["holds"],
        "oversell": checked["oversell"],
        "state": checked["state"],
        "erp": checked["erp"],
        "series": metrics.series(max(load_s, applied_s or 0), lambda t: (
            day.profile.lines_per_s * day.profile.rate(t / day.profile.duration_s)
            if t < day.profile.duration_s else 0.0)),
        "health": health.judge(load_s=load_s, messages=metrics.messages, drained=drain["drained"],
                               lag=metrics.lag, workers=metrics.workers),
        "lag_series": metrics.lag,
        "heartbeat_lag_series": metrics.heartbeat_lag,
        "worker_series": dict(sorted(metrics.workers.items())),
    }


def _falling(samples: list[tuple[float, int]], since: float) -> float | None:
    """Records/s the lag fell after ``since`` (the load's end): the engine's pace with nothing new coming."""
    after = [(t, records) for t, records in samples if t >= since]
    if len(after) < 2 or after[-1][0] <= after[0][0]:
        return None
    return round((after[0][1] - after[-1][1]) / (after[-1][0] - after[0][0]), 1)


def _applied_from_lag(metrics: Any) -> int | None:
    """Lines/s applied over the run, from the last lag sample: (messages produced - lag) x lines/message."""
    if not metrics.lag or not metrics.messages:
        return None
    at, behind = metrics.lag[-1]
    applied = max(0, metrics.messages - behind)
    return round(applied * metrics.lines / metrics.messages / at) if at > 0 else None


def _lag_at(samples: list[tuple[float, int]], at: float) -> int | None:
    before = [records for t, records in samples if t <= at]
    return before[-1] if before else None


def write(report: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return [path, *charts(report, directory)]


def charts(report: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = report["series"]
    t = [row["t"] for row in rows]
    load_s = report["throughput"]["load_s"]
    title = f"ats simulate --profile {report['profile']['name']} ({report['run']['tag']})"
    out = []

    fig, (lines_ax, api_ax) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    lines_ax.plot(t, [row["target_lines_per_s"] for row in rows], label="target lines/s", linestyle="--")
    lines_ax.plot(t, [row["lines_per_s"] for row in rows], label="produced lines/s")
    applied = report["throughput"]["applied_lines_per_s"]
    if applied:
        lines_ax.axhline(applied, color="green", linestyle=":", label=f"applied, whole run ({applied:,}/s)")
    lines_ax.set_ylabel("lines / s")
    lines_ax.legend(loc="upper left")
    lines_ax.set_title(title)
    api_ax.plot(t, [row["reads_per_s"] for row in rows], label="reads/s")
    api_ax.plot(t, [row["holds_per_s"] for row in rows], label="hold decisions/s")
    api_ax.set_ylabel("requests / s")
    api_ax.set_xlabel("run time (s)")
    api_ax.legend(loc="upper left")
    for ax in (lines_ax, api_ax):
        ax.axvline(load_s, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
    out.append(_save(fig, directory / "rates.png", plt))

    fig, ax = plt.subplots(figsize=(11, 5))
    for key, label in (("read_p99_ms", "read p99"), ("read_p50_ms", "read p50"), ("hold_p99_ms", "hold p99"),
                       ("hold_p50_ms", "hold p50"), ("freshness_p50_ms", "freshness p50")):
        points = [(row["t"], row[key]) for row in rows if row[key] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="." if len(points) < 30 else None)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log)")
    ax.set_xlabel("run time (s)")
    ax.set_title(title + ": latencies per second")
    ax.axvline(load_s, color="grey", linewidth=0.8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    out.append(_save(fig, directory / "latency.png", plt))

    fig, ax = plt.subplots(figsize=(11, 4))
    samples = report["lag_series"]
    if samples:
        ax.plot(*zip(*samples, strict=True), label="records produced, not committed by the engine's group")
    if report["heartbeat_lag_series"]:
        ax.plot(*zip(*report["heartbeat_lag_series"], strict=True), label="lag the workers' heartbeats report",
                linestyle="--")
    out.append(_over_time(fig, ax, load_s, "records behind", title + ": consumer lag", directory / "lag.png", plt))

    fig, ax = plt.subplots(figsize=(11, 4))
    for worker, samples in report["worker_series"].items():
        points = [(t, mib) for t, mib, _ in samples if mib is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=f"{worker} RSS")
    ax.axvline(load_s / 2, color="grey", linewidth=0.8, linestyle=":", label="second half (judged flat)")
    out.append(_over_time(fig, ax, load_s, "MiB", title + ": worker memory", directory / "memory.png", plt))
    return out


def _over_time(fig: Any, ax: Any, load_s: float, unit: str, title: str, path: Path, plt: Any) -> Path:
    """A chart over run time with the load's end marked, saved to ``path``."""
    ax.axvline(load_s, color="grey", linewidth=0.8, label="load ends")
    ax.set_ylabel(unit)
    ax.set_xlabel("run time (s)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary table: (figure, value)."""
    tp, fresh, reads, holds = report["throughput"], report["freshness"], report["api"]["reads"], report["holds"]
    erp, over, state = report["erp"], report["oversell"], report["state"]
    outcomes = holds["outcomes"]

    def ms(block: dict[str, Any]) -> str:
        return f"p50 {block['p50_ms']} ms, p90 {block['p90_ms']} ms, p99 {block['p99_ms']} ms (n={block['count']:,})"

    def counts(kind: str) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.get(kind, {}).items())) or "none"

    return [
        ("lines produced", f"{report['produced']['lines']:,} in {report['produced']['messages']:,} messages "
                           f"over {tp['load_s']} s"),
        ("lines/s target (mean) / produced", f"{tp['target_lines_per_s']:,} / {tp['produced_lines_per_s']:,}"),
        ("lines/s applied (whole run)", f"{tp['applied_lines_per_s']:,}" if tp["applied_lines_per_s"] else
         f"not drained; ~{_n(tp['applied_lines_per_s_from_lag'])} from the lag"),
        ("all applied", f"{tp['all_applied_at_s']} s ({tp['behind_at_load_end_s']} s after the load ended)"
         if tp["drained"] else f"NO: {_n(tp['lag_left_records'])} records behind at the drain timeout, falling "
                               f"{tp['drain_records_per_s']}/s (~{_n(tp['estimated_drain_left_s'])} s more)"),
        ("consumer lag", f"max {_n(report['lag']['max_records'])} records, "
                         f"{_n(report['lag']['at_load_end_records'])} at load end"),
        ("freshness (probe → API)", ms(fresh) + f", {fresh['probes_seen']}/{fresh['probes_sent']} seen"),
        ("reads GET /v1/availability", ms(reads) + f", {reads['rps']}/s"),
        ("hold decisions POST /v1/reservations", ms(holds["decision_latency"]) + (
            f"; {holds['http_status'].get('504', 0):,} answered 504 (no decision in time)"
            if holds["http_status"].get("504") else "")),
        ("holds, ordinary", counts("ordinary")),
        ("holds, doorbusters", counts("doorbuster")),
        ("oversell", f"{over['count']}" + ("" if over["final_state_checked"] else
                                           " (doorbuster decisions only: final state not checked)")),
        ("positions vs arithmetic", f"{state['mismatches']} of {state['positions_checked']:,} differ"
         if state["checked"] else state["reason"]),
        ("holds left to expire at the close", _expiries(state.get("expiries"))),
        ("ERP netting ratio (lines ÷ postings)",
         f"{erp['netting_ratio']} ({erp['raw_lines']:,} lines, {erp['postings']:,} postings, "
         f"{erp['revisions']:,} revisions)" if erp["checked"] else erp["reason"]),
        ("ERP conservation", f"{erp['conservation_mismatches']} positions where Σ postings ≠ on_hand"
         if erp["checked"] else "not checked"),
        *_health_rows(report["health"]),
    ]


def _health_rows(judged: dict[str, Any]) -> list[tuple[str, str]]:
    memory, lag, errors = judged["memory"], judged["lag"], judged["error_logs"]

    def worker(name: str, m: dict[str, Any]) -> str:
        if "growth_mib" not in m:
            return f"{name}: {m['reason']}"
        return f"{name}: {m['start_mib']:,} → {m['end_mib']:,} MiB ({m['growth_mib']:+,} of {m['allowed_mib']:,})"

    return [
        ("memory flat (2nd half of the load)", ("yes" if memory["flat"] else "NO") + "; " + (
            "; ".join(worker(name, m) for name, m in memory["workers"].items()) or "no worker published its RSS")),
        ("lag bounded (2nd half of the load)", ("yes" if lag["bounded"] else "NO") +
         f"; max {_n(lag['max_second_half_records'])} records of {_n(lag['peak_bound_records'])} allowed, "
         f"{_n(lag['at_load_end_records'])} of {_n(lag['bound_records'])} at the end"
         + ("" if lag["drained"] else ", not drained")),
        ("worker ERROR log records", ("none" if errors["none"] else "SOME") + "; " + (
            ", ".join(f"{name}: {count}" for name, count in errors["workers"].items()) or "no worker published them")),
    ]


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _expiries(expiries: dict[str, Any] | None) -> str:
    if not expiries:
        return "not checked"
    if not expiries["left_to_expire_at_close"]:
        return "none"
    late = expiries["not_seen_ended"]
    return (f"{expiries['left_to_expire_at_close']}, all shown ended {expiries['all_seen_ended_s_after_last']} s "
            f"after the last one's time" if not late else f"{len(late)} still held: {', '.join(late[:5])}")
