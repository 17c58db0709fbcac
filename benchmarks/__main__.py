"""``make bench``: run every benchmark and print its figure beside its baseline.

The ingest figures (:mod:`benchmarks.ingest`, :mod:`benchmarks.single`) and the read figures
(:mod:`benchmarks.reads`, wrk) are written with a description
of the machine to ``.ats/bench/bench-<UTC time>.json`` and summed up in a table at the end. Faust's
exactly_once against at_least_once (:mod:`benchmarks.eos`) runs once, short (100,000 lines, one pass, no
ownership experiment), on a local Apache Kafka; without Java or Maven it says "not run" and the rest goes on.
"""

from __future__ import annotations

from typing import Any

from . import domain, eos, erp, holds, ingest, reads, rig, single


def table(figures: dict[str, dict[str, Any]]) -> list[str]:
    envelopes, events = figures["ingest, envelopes"], figures["ingest, single-line events"]
    rows = [
        ("ingest, envelopes (lines/s)", envelopes["engine_lines_per_s"], envelopes["plain_read_lines_per_s"],
         "plain aiokafka read", envelopes["ratio"], envelopes["target_ratio"]),
        ("ingest, single-line events (events/s)", events["engine_events_per_s"],
         events["faust_noop_messages_per_s"], "stock Faust no-op agent", events["ratio"], events["target_ratio"]),
    ]
    lines = [f"{'figure':<40} {'engine':>10} {'baseline':>10}  {'(baseline is)':<24} {'ratio':>7} {'target':>7}  met"]
    for name, engine, baseline, what, ratio, target in rows:
        lines.append(f"{name:<40} {engine:>10,} {baseline:>10,}  {what:<24} {ratio:>7.3f} {target:>7.2f}  "
                     f"{'yes' if ratio >= target else 'no'}")
    return lines


def main() -> None:
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
    print("== exactly_once vs at_least_once, Apache Kafka (short: python -m benchmarks.eos for the full runs)")
    figures["eos"] = eos.run(["--runs", "1", "--lines", "100000", "--no-ownership"])
    path = rig.write_result("bench", {**figures, "ERP netting, peak-day simulation": netting})
    print("== summary (excluding worker start-up; both figures also incl. start-up in the JSON)")
    print("\n".join(table(figures)))
    print(f"ERP netting ratio, peak-day simulation profile ({netting['profile']}): {netting['netting_ratio']:.2f} "
          f"lines per posting ({netting['raw_lines']:,} lines, {netting['postings']:,} postings)")
    print(f"written to {path}")


main()
