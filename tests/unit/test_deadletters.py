"""The pure rules of dead-letter listing and redrive: paging newest first over partitions, filters,
cursors, and what a redrive reports. Expected values come from the rules in the module docstring and the
contract (DESIGN.md), worked by hand, or from properties (every record exactly once across pages)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability import deadletters as dl
from availability.deadletters import DeadLetter, Filter, Page
from tests.builders import receipt, sale

ANY = Filter()


def letter(partition: int, offset: int, ts: int, reason: str = "invalid_field", topic: str = "inventory.sales",
           payload: str | None = "{}") -> DeadLetter:
    return DeadLetter(partition, offset, ts, reason, "detail", topic, 0, 100 + offset, payload)


def run(log: Mapping[int, list[DeadLetter]], flt: Filter = ANY, *, limit: int,
        cursor: dict[int, int] | None = None, budget: int = dl.SCAN_BUDGET, chunk: int = 3) -> Page:
    """Drive a scan against an in-memory log: partition → records at offsets 0..n-1."""
    bounds = {p: (0, min(len(records), (cursor or {}).get(p, len(records)))) for p, records in log.items()}
    plan = dl.scan(bounds, flt, limit=limit, budget=budget, chunk=chunk)
    try:
        wanted = next(plan)
        while True:
            wanted = plan.send({f.partition: log[f.partition][f.start:f.end] for f in wanted})
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


LOG = {0: [letter(0, 0, 10), letter(0, 1, 40), letter(0, 2, 50)],
       1: [letter(1, 0, 20), letter(1, 1, 30, reason="missing_field"), letter(1, 2, 60)]}


def test_newest_first_merged_over_partitions() -> None:
    page = run(LOG, limit=10)
    assert [(r.id, r.timestamp_ms) for r in page.items] == [
        ("1:2", 60), ("0:2", 50), ("0:1", 40), ("1:1", 30), ("1:0", 20), ("0:0", 10)]
    assert page.cursor is None  # everything read


def test_pages_continue_below_the_cursor() -> None:
    first = run(LOG, limit=4)
    assert [r.id for r in first.items] == ["1:2", "0:2", "0:1", "1:1"]
    assert first.cursor == {0: 1, 1: 1}
    second = run(LOG, limit=4, cursor=first.cursor)
    assert [r.id for r in second.items] == ["1:0", "0:0"]
    assert second.cursor is None


def test_filters_by_reason_topic_and_time() -> None:
    assert [r.id for r in run(LOG, Filter(reasons=frozenset({"missing_field"})), limit=10).items] == ["1:1"]
    assert [r.id for r in run(LOG, Filter(since_ms=40), limit=10).items] == ["1:2", "0:2", "0:1"]
    assert run(LOG, Filter(topic="inventory.receipts"), limit=10).items == []


def test_a_request_reads_at_most_its_budget_and_says_where_to_go_on() -> None:
    log = {0: [letter(0, o, o) for o in range(30)]}
    page = run(log, Filter(reasons=frozenset({"missing_field"})), limit=5, budget=6, chunk=3)
    assert page.items == []
    assert page.scanned == 6
    assert page.cursor == {0: 24}  # the two chunks below 30 were read; nothing matched in them


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), max_size=12), min_size=1, max_size=4),
       st.integers(1, 5), st.integers(1, 4), st.sets(st.sampled_from(["a", "b"]), max_size=1))
def test_paging_yields_every_matching_record_once_newest_first(
        stamps: list[list[int]], limit: int, chunk: int, reasons: set[str]) -> None:
    log = {p: [letter(p, o, ts, reason="ab"[(ts + o) % 2]) for o, ts in enumerate(sorted(ts_list))]
           for p, ts_list in enumerate(stamps)}
    flt = Filter(reasons=frozenset(reasons))
    seen: list[DeadLetter] = []
    cursor: dict[int, int] | None = None
    for _ in range(200):
        page = run(log, flt, limit=limit, cursor=cursor, chunk=chunk)
        assert len(page.items) <= limit
        seen += page.items
        if page.cursor is None:
            break
        cursor = dl.decode_cursor(dl.encode_cursor(page.cursor))
    expected = [r for records in log.values() for r in records if flt.matches(r)]
    assert sorted(r.id for r in seen) == sorted(r.id for r in expected)
    assert len(seen) == len({r.id for r in seen})
    keys = [(r.timestamp_ms, r.partition, r.offset) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_cursor_round_trip_and_garbage() -> None:
    assert dl.decode_cursor(dl.encode_cursor({3: 17, 0: 0})) == {0: 0, 3: 17}
    for bad in ("", "abc", "e30", dl.encode_cursor({1: 2})[:-2] + "!!"):
        with pytest.raises(dl.DeadLetterError) as caught:
            dl.decode_cursor(bad)
        assert caught.value.field == "cursor"


def test_ids_and_since() -> None:
    assert dl.parse_id("3:17") == (3, 17)
    for bad in ("3", "a:1", "3:-1", ":1", "3:17:1"):
        with pytest.raises(dl.DeadLetterError):
            dl.parse_id(bad)
    now = 1_800_000_000_000
    assert dl.parse_since("15m", now) == now - 15 * 60_000
    assert dl.parse_since("7d", now) == now - 7 * 86_400_000
    assert dl.parse_since("2026-11-24T10:00:00+01:00", now) == dl.parse_since("2026-11-24T09:00:00Z", now)
    for bad in ("2026-11-24T10:00:00", "yesterday", "15 m"):
        with pytest.raises(dl.DeadLetterError):
            dl.parse_since(bad, now)


def test_a_record_of_the_contract_is_read_back_and_anything_else_is_listed_unreadable() -> None:
    value = orjson.dumps({"reason": "invalid_json", "detail": "d", "topic": "inventory.sales", "partition": 2,
                          "offset": 9, "payload": "{oops"})
    read = dl.parse_record(4, 7, 1234, value)
    assert (read.id, read.reason, read.topic, read.origin_partition, read.origin_offset, read.payload) == (
        "4:7", "invalid_json", "inventory.sales", 2, 9, "{oops")
    assert dl.parse_record(0, 1, 5, b"\xff not json").reason == dl.UNREADABLE
    item = dl.to_item(dl.parse_record(4, 7, 0, orjson.dumps({"reason": "x", "payload": "p" * 5000})))
    assert item["payload_truncated"] is True
    assert len(item["payload"]) == dl.PAYLOAD_PREVIEW


def test_redrive_outcomes() -> None:
    good = sale("S-1", ("SKU-1", 2))
    not_json = letter(0, 1, 0, reason="invalid_json", payload='{"event_id": ')
    again = dl.resubmit(not_json)
    assert again.event is None
    assert again.rejection is not None
    assert again.rejection.reason == "invalid_json"
    fixed = dl.resubmit(not_json, dl.correction_bytes(good))
    assert fixed.rejection is None
    assert dl.destination(fixed) == "inventory.sales"
    # uncorrected: the same record on the same topic, so a receipt that arrived on the sales topic stays refused
    misplaced = dl.resubmit(letter(0, 2, 0, payload=orjson.dumps(receipt("S-1", ("SKU-1", 1))).decode()))
    assert misplaced.rejection is not None
    assert misplaced.rejection.reason == "type_topic_mismatch"
    unknown_origin = dl.resubmit(letter(0, 3, 0, topic="elsewhere"))
    assert unknown_origin.rejection is not None
    assert unknown_origin.rejection.reason == "not_redrivable"


def test_report_says_what_was_accepted_and_why_the_rest_was_not() -> None:
    good = sale("S-1", ("SKU-1", 2))
    accepted = dl.report_item(dl.resubmit(letter(0, 1, 0, payload=orjson.dumps(good).decode())), produced=True)
    assert accepted == {"id": "0:1", "reason": "invalid_field", "topic": "inventory.sales", "partition": 0,
                        "offset": 101, "corrected": False, "status": "accepted", "produced": True,
                        "event_id": good["event_id"], "produced_to": "inventory.sales"}
    rejected = dl.report_item(dl.resubmit(letter(0, 2, 0, payload="")), produced=False)
    assert rejected["status"] == "rejected"
    assert rejected["rejection"]["reason"] == "empty_message"
    items = [accepted, rejected, dl.not_found_item("5:5")]
    assert dl.summarize(items) == {"accepted": 1, "rejected": 1, "not_found": 1}
    assert [r.id for r in dl.oldest_first([letter(1, 0, 20), letter(0, 5, 10), letter(0, 4, 20)])] == [
        "0:5", "0:4", "1:0"]
