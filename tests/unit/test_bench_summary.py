"""``make bench``'s closing tables (:mod:`benchmarks.__main__`): every figure of issue 6 has a row with its
baseline, its target and a verdict, and a short run gives no verdict it cannot back."""

from __future__ import annotations

from typing import Any

from benchmarks.__main__ import table, targets


def figures(*, reads: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {
        "ingest, envelopes": {"engine_lines_per_s": 37_634, "plain_read_lines_per_s": 2_977_509, "ratio": 0.013,
                              "target_ratio": 0.1, "domain_ceiling_lines_per_s": 84_083,
                              "domain_ceiling_ratio": 0.028},
        "ingest, single-line events": {"engine_events_per_s": 18_015, "faust_noop_messages_per_s": 14_047,
                                       "ratio": 1.282, "target_ratio": 2.0, "domain_ceiling_events_per_s": 31_989,
                                       "domain_ceiling_ratio": 2.277},
        "reads": reads if reads is not None else {
            "one": {"rps": 14_983.2, "p99_ms": 6.94}, "baseline": {"rps": 23_967.0, "p99_ms": 6.26},
            "bulk": {"rps": 3_609.0, "p99_ms": 6.23}, "ratio": 0.625, "target_ratio": 0.5, "p99_target_ms": 10,
            "bulk_p99_target_ms": 25},
        "freshness": {"fresh_p99_ms": 55.9, "healthz_p99_ms": 4.6, "target_p99_ms": 100.0, "met": True},
        "holds, contended": {"decision_p99_ms": 48.1, "healthz_p99_ms": 3.6, "target_p99_ms": 50.0, "oversold": {}},
        "recovery": {"positions": 1_000_000, "ready_s": 21.25, "plain_read_changelog_s": 1.32, "target_s": 30.0,
                     "met": True},
        "memory": {"estimate_1m_positions_10m_ids_mib": 1_839, "rss_empty_mib": 86, "target_mib": 2048.0,
                   "met": True},
    }


def verdicts(lines: list[str]) -> dict[str, str]:
    return {line[:44].strip(): line.rsplit("  ", 1)[-1] for line in lines[1:] if not line.startswith("oversell")}


def test_every_target_has_a_row_with_its_verdict() -> None:
    rates = verdicts(table(figures()))
    assert rates["ingest, envelopes (lines/s)"] == "no"
    assert rates["ingest, single-line events (events/s)"] == "no"
    assert rates["reads, GET one SKU (requests/s)"] == "yes"
    absolute = verdicts(targets(figures()))
    assert absolute == {"reads p99 (ms), GET one SKU": "yes", "bulk reads p99 (ms), 100 SKUs": "yes",
                        "freshness p99 (ms)": "yes",
                        "hold decision p99 (ms), contended": "yes", "recovery, 1,000,000 positions (s)": "yes",
                        "RSS, 1M positions + 10M ids (MiB, extrap.)": "yes"}


def test_a_quick_run_gives_no_verdict_for_its_short_figures() -> None:
    absolute = verdicts(targets(figures(), quick=True))
    short = [name for name in absolute if not name.startswith(("reads", "bulk"))]
    assert len(short) == 4
    assert all(absolute[name] == "n/a (short run)" for name in short), absolute


def test_reads_without_wrk_say_so() -> None:
    assert not any(line.startswith("reads") for line in table(figures(reads={"not_run": "wrk is missing"}))[1:])
    assert verdicts(targets(figures(reads={"not_run": "wrk is missing"})))["reads"] == "not run: wrk is missing"
