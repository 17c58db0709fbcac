"""``make bench``: run every benchmark and print its figure beside its baseline.

Every figure of issue 6 runs at its full size (each script's defaults): the ingest figures
(:mod:`benchmarks.ingest`, :mod:`benchmarks.single`), the read figures (:mod:`benchmarks.reads`, wrk),
freshness, the contended holds, recovery on 1M positions and memory with 1M positions and 1M event ids.
They are written with a description of the machine to ``.ats/bench/bench-<UTC time>.json`` and summed up
at the end in two tables, each row with its baseline, its target and whether it was met (~10 minutes on
the 2-core machine). Faust's exactly_once against at_least_once (:mod:`benchmarks.eos`) runs once, short
(100,000 lines, one pass, no ownership experiment), on a local Apache Kafka; without Java or Maven it says
"not run" and the rest goes on.

``python -m benchmarks --quick`` runs freshness, the holds, recovery and memory short (10 s of probes, 5 s
of holds, 200k positions, 200k positions and 20k event ids; ~6 minutes). The short figures are rougher
and their rows say so instead of met or not: recovery's target is for 1M positions, a p99 over 1,000
holds is the tenth slowest, and RSS growth over 20k ids is within the noise of a page or two of the
allocator, so its extrapolation to 10M swings widely (3.5 GiB in a run of the hour whose full figures
were 1.6 and 1.8 GiB).
"""

from __future__ import annotations

import argparse
from typing import Any

from . import domain, eos, erp, freshness, holds, ingest, memory, reads, recovery, rig, single

#: (name, measure, the short arguments ``--quick`` runs it with, the command of the full figure)
SHORT = (("freshness", freshness.run, ["--seconds", "10"], "python -m benchmarks.freshness"),
         ("holds, contended", holds.run_contended, ["--contended", "--seconds", "5"],
          "python -m benchmarks.holds --contended"),
         ("recovery", recovery.run, ["--positions", "200000"], "python -m benchmarks.recovery"),
         ("memory", memory.run, ["--positions", "200000", "--ids", "20000"], "python -m benchmarks.memory"))


def table(figures: dict[str, dict[str, Any]]) -> list[str]:
    envelopes, events = figures["ingest, envelopes"], figures["ingest, single-line events"]
    rows = [
        ("ingest, envelopes (lines/s)", envelopes["engine_lines_per_s"], envelopes["plain_read_lines_per_s"],
         "plain aiokafka read", envelopes["ratio"], envelopes["target_ratio"]),
        ("ingest, single-line events (events/s)", events["engine_events_per_s"],
         events["faust_noop_messages_per_s"], "stock Faust no-op agent", events["ratio"], events["target_ratio"]),
        *_reads_rate(figures["reads"]),
        # what the domain alone reaches in process (benchmarks.ceiling): no engine on it can do better
        ("  envelopes, the domain alone (ceiling)", envelopes["domain_ceiling_lines_per_s"],
         envelopes["plain_read_lines_per_s"], "plain aiokafka read", envelopes["domain_ceiling_ratio"],
         envelopes["target_ratio"]),
        ("  single, the domain alone (ceiling)", events["domain_ceiling_events_per_s"],
         events["faust_noop_messages_per_s"], "stock Faust no-op agent", events["domain_ceiling_ratio"],
         events["target_ratio"]),
    ]
    lines = [f"{'figure':<40} {'engine':>10} {'baseline':>10}  {'(baseline is)':<24} {'ratio':>7} {'target':>7}  met"]
    for name, engine, baseline, what, ratio, target in rows:
        lines.append(f"{name:<40} {engine:>10,} {baseline:>10,}  {what:<24} {ratio:>7.3f} {target:>7.2f}  "
                     f"{'yes' if ratio >= target else 'no'}")
    return lines


def _reads_rate(reads: dict[str, Any]) -> list[tuple[str, int, int, str, float, float]]:
    if "not_run" in reads:
        return []
    return [("reads, GET one SKU (requests/s)", round(reads["one"]["rps"]), round(reads["baseline"]["rps"]),
             "bare aiohttp handler", reads["ratio"], reads["target_ratio"])]


def _reads_latency(reads: dict[str, Any]) -> list[tuple[str, float, str, str, bool | str | None]]:
    if "not_run" in reads:
        return [("reads", 0, "", "", f"not run: {reads['not_run']}")]
    one, bare, bulk = reads["one"], reads["baseline"], reads["bulk"]
    return [("reads p99 (ms), GET one SKU", one["p99_ms"], f"bare handler p99 {bare['p99_ms']} ms",
             f"≤ {reads['p99_target_ms']}", one["p99_ms"] <= reads["p99_target_ms"]),
            ("bulk reads p99 (ms), 100 SKUs", bulk["p99_ms"], f"{bulk['rps']:,.0f} requests/s",
             f"≤ {reads['bulk_p99_target_ms']}", bulk["p99_ms"] <= reads["bulk_p99_target_ms"])]


def targets(figures: dict[str, dict[str, Any]], *, quick: bool = False) -> list[str]:
    """The figures with an absolute target, each beside its baseline (``quick``: the short runs', with no
    verdict where a short run cannot give one)."""
    fresh, race, back, rss = (figures[name] for name, *_ in SHORT)
    short = [
        ("freshness p99 (ms)", fresh["fresh_p99_ms"], f"GET /healthz p99 {fresh['healthz_p99_ms']} ms",
         f"≤ {fresh['target_p99_ms']:.0f}", fresh["met"]),
        ("hold decision p99 (ms), contended", race["decision_p99_ms"],
         f"GET /healthz p99 {race['healthz_p99_ms']} ms", f"≤ {race['target_p99_ms']:.0f}",
         race["decision_p99_ms"] <= race["target_p99_ms"]),
        (f"recovery, {back['positions']:,} positions (s)", back["ready_s"],
         f"plain changelog read {back['plain_read_changelog_s']} s", f"≤ {back['target_s']:.0f} (1M)", back["met"]),
        ("RSS, 1M positions + 10M ids (MiB, extrap.)", rss["estimate_1m_positions_10m_ids_mib"],
         f"empty worker {rss['rss_empty_mib']} MiB", f"≤ {rss['target_mib']:.0f}", rss["met"]),
    ]
    rows = [*_reads_latency(figures["reads"]), *((*row[:4], None) if quick else row for row in short)]
    lines = [f"{'figure':<44} {'engine':>10}  {'baseline':<34} {'target':>11}  met"]
    for name, value, baseline, target, met in rows:
        verdict = met if isinstance(met, str) else "n/a (short run)" if met is None else "yes" if met else "no"
        lines.append(f"{name:<44} {value:>10,}  {baseline:<34} {target:>11}  {verdict}")
    lines.append(f"oversell in the contended holds: {race['oversold'] or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="freshness, holds, recovery and memory short (~6 minutes instead of ~10)")
    quick = parser.parse_args(argv).quick
    print("== domain apply")
    domain.main()
    print("== ERP netting")
    netting = erp.main()
    print("== hold decisions")
    holds.main()
    figures: dict[str, dict[str, Any]] = {}
    for name, measure in (("ingest, envelopes", ingest.run), ("ingest, single-line events", single.run)):
        print(f"== {name}")
        figures[name] = measure([])
    print("== reads under wrk: GET one SKU (64 connections) beside a bare aiohttp handler; bulk query of 100 SKUs")
    figures["reads"] = reads.run([])
    for name, measure, short, full in SHORT:
        print(f"== {name} (short: {full} for the full figure)" if quick else f"== {name} ({full})")
        figures[name] = measure(short if quick else [])
    print("== exactly_once vs at_least_once, Apache Kafka (short: python -m benchmarks.eos for the full runs)")
    figures["eos"] = eos.run(["--runs", "1", "--lines", "100000", "--no-ownership"])
    path = rig.write_result("bench", {**figures, "ERP netting, peak-day simulation": netting})
    print("== summary (excluding worker start-up; both figures also incl. start-up in the JSON)")
    print("\n".join(table(figures)))
    print("\n".join(targets(figures, quick=quick)))
    print(f"ERP netting ratio, peak-day simulation profile ({netting['profile']}): {netting['netting_ratio']:.2f} "
          f"lines per posting ({netting['raw_lines']:,} lines, {netting['postings']:,} postings)")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
