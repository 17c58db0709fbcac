"""After the drain: every position the run touched against the simulator's arithmetic (through the API),
oversells, and the ERP postings of the day (the netting ratio).

An **oversell** is either
* a position whose final state has ``on_hand < 0`` or ``reserved > on_hand - safety_stock``: the
  simulator never sells, ships or holds (outside the doorbusters) beyond the stock it believes free, so
  only a hold the engine accepted without stock can leave one; or
* a doorbuster hold accepted while more units were already held or sold than had been supplied
  (:meth:`simulation.book.FlashLog.beyond_stock`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from availability import topics

from .day import MOVEMENT_KINDS
from .metrics import summary

if TYPE_CHECKING:
    from .run import Run

#: seconds past its time a hold left to expire at the close may take to show as expired (the engine's
#: tick, its flush and the cache write; a loaded 2-core machine has taken over 1.4 s)
EXPIRY_WAIT_S = 15.0
FIELDS = ("on_hand", "reserved", "in_transit", "damaged", "safety_stock")
ON_HAND_TYPES = ("sale", "return", "receipt", "transfer_out", "transfer_in", "adjustment")


async def check(run: Run, drain: dict[str, Any]) -> dict[str, Any]:
    day = run.day
    flash = {f"{location}/{sku}": log.beyond_stock() for (location, sku), log in day.book.flash.items()}
    if drain["drained"]:
        run.on_progress("expiries", 1.0, {})
        expiries = await expired(run)
        day.settle()
        run.on_progress("positions", 1.0, {})
        state = {**await compare_positions(run), "expiries": expiries}
        run.on_progress("ERP feed", 1.0, {})
        erp = await erp_feed(run)
    else:  # a state half applied says nothing about the arithmetic: only the hold decisions can be judged
        reason = "not checked: the engine had not applied the load at the drain timeout"
        state = {"checked": False, "reason": reason, "negative": []}
        erp = {"checked": False, "reason": reason}
    beyond = sum(len(entries) for entries in flash.values())
    oversell = {
        "count": beyond + len(state["negative"]),
        "final_state_checked": state["checked"],
        "doorbuster_acceptances_beyond_stock": beyond,
        "positions_below_zero_or_over_reserved": len(state["negative"]),
        "examples": (state["negative"][:10]
                     + [{"position": key, "at_s": at, "held_or_sold": used, "supplied": supplied}
                        for key, entries in flash.items() for at, used, supplied in entries][:10]),
    }
    return {"drain": drain, "oversell": oversell, "state": {k: v for k, v in state.items() if k != "negative"},
            "erp": erp, "holds": hold_report(run)}


async def expired(run: Run, within_s: float = EXPIRY_WAIT_S) -> dict[str, Any]:
    """Wait until the API shows every hold left to expire at the close as ended: the owners' clock ticks
    expire them, a tick interval or so after their time, later on a busy machine. Returns how many there
    were, the seconds from the last one's time until all were seen ended, and any not seen within
    ``within_s`` (its position then differs, as it does in the engine)."""
    assert run.api is not None
    pending = set(run.day.left_to_expire())
    count, last = len(pending), run.day.expiring_until()
    await asyncio.sleep(max(0.0, last - run.now()))
    while pending and run.now() < last + within_s:
        for reservation_id in sorted(pending):
            status, body, _ = await run.api.reservation(reservation_id)
            if status == 200 and body.get("status") != "held":
                pending.discard(reservation_id)
        if pending:
            await asyncio.sleep(0.05)
    return {"left_to_expire_at_close": count, "not_seen_ended": sorted(pending),
            "all_seen_ended_s_after_last": round(run.now() - last, 2) if count else None}


async def compare_positions(run: Run) -> dict[str, Any]:
    """Every position of the book against ``POST /v1/availability/query`` (1,000 SKUs a request)."""
    assert run.api is not None
    book = run.day.book
    by_sku: dict[str, list[str]] = defaultdict(list)
    for location, sku in book.positions:
        by_sku[sku].append(location)
    locations = [*run.day.stores, *run.day.dcs]
    skus = sorted(by_sku)
    mismatches: list[dict[str, Any]] = []
    negative: list[dict[str, Any]] = []
    checked = skipped = 0
    for start in range(0, len(skus), 1000):
        batch = skus[start:start + 1000]
        status, body, _ = await run.api.query(batch, locations)
        if status != 200:
            raise RuntimeError(f"POST /v1/availability/query answered {status}: {body}")
        for item in body["items"]:
            found = {entry["location_id"]: entry for entry in item["locations"]}
            for location in by_sku[item["sku"]]:
                key = (location, item["sku"])
                entry = found.get(location, {})
                actual = [entry.get(name, 0) for name in FIELDS]
                if entry and (actual[0] < 0 or actual[0] - actual[1] - actual[4] < 0):
                    negative.append({"position": f"{location}/{item['sku']}", **dict(zip(FIELDS, actual, strict=True))})
                if key in book.uncertain:
                    skipped += 1
                    continue
                checked += 1
                expected = book.positions[key].as_list()
                if actual != expected:
                    mismatches.append({"position": f"{location}/{item['sku']}",
                                       "expected": dict(zip(FIELDS, expected, strict=True)),
                                       "api": dict(zip(FIELDS, actual, strict=True))})
    for example in mismatches[:10]:
        example["holds"] = await _holds_at(run, *example["position"].rsplit("/", 1))
    return {"checked": True, "positions_checked": checked, "positions_uncertain": skipped,
            "mismatches": len(mismatches), "mismatch_examples": mismatches[:10], "negative": negative}


async def _holds_at(run: Run, location: str, sku: str) -> list[dict[str, Any]]:
    """The simulator's holds on a position that differs, each with its plan and status as the simulator saw
    them and the reservation as the API shows it now: which hold the two disagree on."""
    assert run.api is not None
    out = []
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for hold in run.day.holds_by_id.values():
        if hold.location == location and any(line_sku == sku for line_sku, _ in hold.lines):
            status, body, _ = await run.api.reservation(hold.rid)
            out.append({"reservation_id": hold.rid, "plan": hold.plan, "simulator": hold.status,
                        "api": body if status == 200 else status, "checked_at": now})
    return out


async def erp_feed(run: Run, idle_s: float = 2.0, timeout_s: float = 60.0) -> dict[str, Any]:
    """The run's postings on ``erp.movements`` (read from the beginning until quiet), and the netting ratio."""
    await asyncio.sleep(2 * run.target.tick_ms / 1000 + 0.5)  # the owners' next tick closes the last windows
    prefix = run.day.tag + "-"
    postings: list[dict[str, Any]] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=run.target.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    # bounded: aiokafka retries a start or an offset reset for as long as the broker does not answer
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        partitions = consumer.partitions_for_topic(topics.ERP_MOVEMENTS) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # aiokafka has no public refresh
            partitions = consumer.partitions_for_topic(topics.ERP_MOVEMENTS) or set()
        consumer.assign([TopicPartition(topics.ERP_MOVEMENTS, p) for p in partitions])
        await asyncio.wait_for(consumer.seek_to_beginning(), timeout_s)
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=250, max_records=50_000)
            for records in batches.values():
                for record in records:
                    posting = orjson.loads(record.value or b"{}")
                    if posting.get("location_id", "").startswith(prefix):
                        postings.append(posting)
                        quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return netting(run, postings)


def netting(run: Run, postings: list[dict[str, Any]]) -> dict[str, Any]:
    day = run.day
    start = day.start_ms
    ours = [p for p in postings if not p["sku"].startswith(("SENTINEL-", "PROBE-"))]
    of_the_day = [p for p in ours if _epoch_ms(p["window_start"]) >= start]
    raw = sum(day.mix[kind][1] for kind in MOVEMENT_KINDS if kind in day.mix)
    posted: dict[tuple[str, str], int] = defaultdict(int)
    for posting in ours:
        if posting["movement_type"] in ON_HAND_TYPES:
            posted[(posting["location_id"], posting["sku"])] += posting["qty"]
    drift = [{"position": f"{loc}/{sku}", "posted": posted.get((loc, sku), 0), "on_hand": expected.on_hand}
             for (loc, sku), expected in day.book.positions.items() if posted.get((loc, sku), 0) != expected.on_hand]
    by_type: dict[str, int] = defaultdict(int)
    for posting in of_the_day:
        by_type[posting["movement_type"]] += 1
    return {
        "checked": True, "raw_lines": raw, "postings": len(of_the_day),
        "netting_ratio": round(raw / len(of_the_day), 3) if of_the_day else None,
        "postings_by_type": dict(sorted(by_type.items())),
        # postings beyond the first of their (SKU, location, type, window): late events posted as a revision
        "revisions": len(of_the_day) - len({(p["sku"], p["location_id"], p["movement_type"], p["window_start"])
                                            for p in of_the_day}),
        "postings_incl_opening_stock": len(ours),
        "conservation_mismatches": len(drift), "conservation_examples": drift[:5],
    }


def hold_report(run: Run) -> dict[str, Any]:
    metrics = run.metrics
    return {
        "asked": len(run.day.holds_by_id), "skipped_client_busy": metrics.holds_skipped,
        "not_asked_out_of_stock": run.day.mix.get("hold_not_asked", [0])[0],
        "http_status": {str(k): v for k, v in sorted(metrics.hold_status.items())},
        "outcomes": run.day.hold_outcomes(),
        "decision_latency": summary(metrics.holds), "answer_latency": summary(metrics.hold_answers),
        "release_latency": summary(metrics.releases),
    }


def _epoch_ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)
