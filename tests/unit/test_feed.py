"""The availability change feed: crossings judged flush to flush, kept in an outbox with the position that
crossed, sent at least once (also across a crash inside a flush), under ids that do not change.

Expected records are worked by hand from the rules in :mod:`availability.feed`, or are properties of
the sent stream (alternation, agreement with the final state, no loss across a crash).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from availability.channels import ChannelView, ChannelViews, parse_channels
from availability.feed import (
    BACK_IN_STOCK,
    LOW_STOCK,
    LOW_STOCK_RECOVERED,
    OUT_OF_STOCK,
    Change,
    FeedRules,
    LowStock,
    change_record,
    crossings,
    feed_rules,
    outbox_from_wire,
    outbox_json,
)
from availability.model import Position

from .test_shard import NOW, Shard, hold, policy, receipt, restore, run, sale, sources_of, table_after

ECOM = ChannelView(locations="all", default_buffer=1, low_stock=3)
RULES = FeedRules((LowStock("ecom", ECOM, 3),))


def at(on_hand: int) -> Position:
    return Position(on_hand=on_hand, updated_ms=NOW)


def cross(rules: FeedRules, sku: str, location_id: str, before: int, after: int, *causes: str,
          now_ms: int = NOW) -> list[Change]:
    """The crossings from ATS ``before`` to ``after`` (on_hand alone), changed by ``causes`` in order."""
    return crossings(rules, sku, location_id, max(0, before), at(after), causes[0], causes[-1], now_ms)


def kinds(changes: list[Change]) -> list[tuple[str | None, str, int, int, int]]:
    return [(c.channel, c.kind, c.previous_ats, c.ats, c.threshold) for c in changes]


# ---- detection, by hand --------------------------------------------------------------------------------

def test_the_zero_crossings() -> None:
    assert kinds(cross(FeedRules(), "A", "S1", 5, 0, "e1")) == [(None, OUT_OF_STOCK, 5, 0, 1)]
    assert kinds(cross(FeedRules(), "A", "S1", 0, 2, "e1")) == [(None, BACK_IN_STOCK, 0, 2, 1)]
    assert cross(FeedRules(), "A", "S1", 5, 2, "e1") == []  # no level crossed
    assert cross(FeedRules(), "A", "S1", 0, -4, "e1") == []  # oversold: ATS stays 0


def test_low_stock_is_the_channels_share_crossing_its_level() -> None:
    # ecom holds 1 back at every location: ATS 5 offers 4, ATS 3 offers 2 (< 3: low), ATS 4 offers 3 (not low)
    assert kinds(cross(RULES, "A", "S1", 5, 3, "e")) == [("ecom", LOW_STOCK, 4, 2, 3)]
    assert cross(RULES, "A", "S1", 5, 4, "e") == []
    assert kinds(cross(RULES, "A", "S1", 3, 0, "e")) == [(None, OUT_OF_STOCK, 3, 0, 1)]
    assert kinds(cross(RULES, "A", "S1", 9, 0, "e")) == [
        (None, OUT_OF_STOCK, 9, 0, 1), ("ecom", LOW_STOCK, 8, 0, 3)]
    assert kinds(cross(RULES, "A", "S1", 0, 10, "e")) == [
        (None, BACK_IN_STOCK, 0, 10, 1), ("ecom", LOW_STOCK_RECOVERED, 0, 9, 3)]
    pickup = FeedRules((LowStock("pickup", ChannelView(locations=["S2"], low_stock=3), 3),))
    assert cross(pickup, "A", "S1", 5, 1, "e") == []  # S1 does not sell to pickup


def test_rules_come_from_the_channels_file() -> None:
    views = parse_channels('{"low_stock": 2, "channels": {"ecom": {"default_buffer": 1, "low_stock": 3},'
                           ' "pickup": {"locations": ["S2"]}}}')
    assert [(r.channel, r.level) for r in feed_rules(views).low_stock] == [(None, 2), ("ecom", 3)]
    assert feed_rules(ChannelViews()) == FeedRules()


def test_the_id_names_the_crossing_and_its_cause() -> None:
    first = cross(FeedRules(), "A", "S1", 5, 0, "e1", "e2")[0]
    again = cross(FeedRules(), "A", "S1", 4, 0, "e2", now_ms=NOW + 999)[0]
    assert first.change_id == again.change_id  # the same crossing, seen by another flush grouping
    other = cross(FeedRules(), "A", "S1", 5, 0, "e3")[0]
    assert len({first.change_id, other.change_id,
                cross(FeedRules(), "A", "S2", 5, 0, "e1", "e2")[0].change_id}) == 3


def test_the_record_format() -> None:
    change = cross(RULES, "A", "S1", 5, 3, "e1", now_ms=NOW + 1500)[0]
    assert change_record(change) == {
        "change_id": change.change_id, "sku": "A", "location_id": "S1", "channel": "ecom", "kind": "low_stock",
        "ats": 2, "previous_ats": 4, "threshold": 3, "as_of": "2024-01-01T01:00:00.000Z",
        "detected_at": "2024-01-01T01:00:01.500Z", "event_ids": ["e1"]}


# ---- through the partition state --------------------------------------------------------------------------

def flushed(shard: Shard, now_ms: int = NOW) -> list[Change]:
    flush = shard.state.drain(now_ms)
    changes = list(flush.changes) if flush else []
    shard.state.confirm_changes(changes)
    return changes


def test_a_burst_of_sales_in_one_flush_is_one_out_of_stock_naming_the_latest_sales() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 12), event_id="r1"))
    assert kinds(flushed(shard)) == [(None, BACK_IN_STOCK, 0, 12, 1)]
    for i in range(12):
        shard.send(sale("S1", ("A", 1), event_id=f"s{i}"))
    [out] = flushed(shard)
    assert (out.kind, out.previous_ats, out.ats) == (OUT_OF_STOCK, 12, 0)
    assert out.event_ids == ("s0", "s11")  # the first sale of the burst, and the one that took the last unit
    shard.send(sale("S1", ("A", 1), event_id="s12"))  # oversold: still 0, nothing to say
    assert flushed(shard) == []
    shard.send(receipt("S1", ("A", 5), event_id="r2"))
    assert kinds(flushed(shard)) == [(None, BACK_IN_STOCK, 0, 4, 1)]


def test_down_and_up_again_within_a_flush_is_nothing() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 2)))
    flushed(shard)
    shard.send(sale("S1", ("A", 2)))
    shard.send(receipt("S1", ("A", 3)))
    assert flushed(shard) == []


def test_holds_policies_and_expiry_cross_too() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 3)))
    flushed(shard)
    shard.send(hold("S1", "R1", ("A", 3), ttl_seconds=60, event_id="h1"))
    [out] = flushed(shard)
    assert (out.kind, out.event_ids) == (OUT_OF_STOCK, ("h1",))
    shard.tick(NOW + 61_000)  # the hold expires: its event is the cause
    [back] = flushed(shard)
    assert (back.kind, back.ats, back.event_ids) == (BACK_IN_STOCK, 3, ("h1",))
    assert back.change_id != out.change_id
    shard.send(policy("S1", ("A", 3), event_id="p1"))
    assert [(c.kind, c.event_ids) for c in flushed(shard)] == [(OUT_OF_STOCK, ("p1",))]


def test_an_unsent_crossing_survives_a_restart_and_a_sent_one_does_not_come_back() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 2), ("B", 1)))
    flush = shard.state.drain(NOW)
    assert flush is not None
    stored = [*flush.records, flush.marker]
    assert sorted(restore(stored).change_outbox()) == sorted(flush.changes)  # crash before sending: again, same ids
    shard.state.confirm_changes(flush.changes)
    again = shard.state.drain(NOW + 1000)
    assert again is not None
    assert restore(table_after(stored, [*again.records, again.marker])).change_outbox() == []


# ---- properties -------------------------------------------------------------------------------------------

Step = tuple[str, int]  # ("sale" | "receipt", qty)
steps = st.lists(st.tuples(st.sampled_from(["sale", "receipt"]), st.integers(1, 4)), min_size=1, max_size=30)


def history_of(plan: list[Step]) -> list[Any]:
    return [((sale if kind == "sale" else receipt)("S1", ("A", qty)), NOW) for kind, qty in plan]


def ats_after(plan: list[Step]) -> int:
    return max(0, sum(qty if kind == "receipt" else -qty for kind, qty in plan))


def check_stream(sent: list[Change], final_ats: int, level: int) -> None:
    """Deduplicated by id (an id sent twice carries the same record), per threshold the records alternate,
    each starts where the one before ended, and the last agrees with the final ATS: nothing lost."""
    by_id: dict[str, Change] = {}
    for change in sent:
        assert by_id.setdefault(change.change_id, change) == change
    for channel, threshold, share in ((None, 1, final_ats), ("ecom", level, max(0, final_ats - 1))):
        below = True  # the position starts empty
        for change in (c for c in by_id.values() if c.channel == channel):
            assert (change.previous_ats < threshold) == below
            below = change.ats < threshold
            assert change.kind in ((OUT_OF_STOCK, LOW_STOCK) if below else (BACK_IN_STOCK, LOW_STOCK_RECOVERED))
        assert below == (share < threshold)


@settings(max_examples=200, deadline=None)
@given(plan=steps, data=st.data())
def test_one_record_per_crossing_of_the_flush_end_values(plan: list[Step], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(plan)), max_size=len(plan))) | {len(plan)})
    rules = FeedRules((LowStock("ecom", ECOM, 3),))
    shard = Shard()
    shard.state.feed = rules
    history, sources = history_of(plan), sources_of(history_of(plan))
    sent: list[Change] = []
    start, ends = 0, [0]
    for cut in cuts:
        run(shard, history[start:cut], sources[start:cut])
        sent += flushed(shard)
        ends.append(ats_after(plan[:cut]))
        start = cut
    expected = sum((a > 0) != (b > 0) for a, b in itertools.pairwise(ends))
    expected += sum((max(0, a - 1) < 3) != (max(0, b - 1) < 3) for a, b in itertools.pairwise(ends))
    assert len(sent) == expected
    check_stream(sent, ats_after(plan), 3)


@settings(max_examples=300, deadline=None)
@given(plan=steps, data=st.data())
def test_a_crash_anywhere_in_a_flush_loses_no_crossing(plan: list[Step], data: st.DataObject) -> None:
    """Flushes sent and confirmed; then one flush written up to any record (or whole, its records maybe
    sent but not confirmed), a crash, recovery from the changelog, the outbox sent again, the inputs
    replayed from the last stored offsets, and flushes again: the stream still tells every crossing."""
    history, sources = history_of(plan), sources_of(history_of(plan))
    split = data.draw(st.integers(0, len(plan)))
    shard = Shard()
    shard.state.feed = RULES
    table: list[tuple[str, Any]] = []
    sent: list[Change] = []
    for i in range(split):  # a flush after every event, sent and confirmed
        run(shard, history[i:i + 1], sources[i:i + 1])
        flush = shard.state.drain(NOW)
        if flush:
            table = table_after(table, [*flush.records, flush.marker])
            sent += flush.changes
            shard.state.confirm_changes(flush.changes)
    run(shard, history[split:], sources[split:])
    torn = shard.state.drain(NOW)
    records = [*torn.records, torn.marker] if torn else []
    keep = data.draw(st.integers(0, len(records)))
    table = table_after(table, records[:keep])
    if keep == len(records) and torn and data.draw(st.booleans()):
        sent += torn.changes  # sent, but the crash came before the confirmation was written
    recovered = Shard()
    recovered.state = restore(table)
    recovered.state.feed = RULES
    outbox = recovered.state.change_outbox()
    sent += outbox
    recovered.state.confirm_changes(outbox)
    run(recovered, history, sources)  # from the beginning: what the state holds is skipped
    sent += flushed(recovered)
    check_stream(sent, ats_after(plan), 3)



def test_the_outbox_is_stored_as_json_and_read_back_unchanged() -> None:
    changes = [*cross(RULES, 'SKU-"1', "S-1", 9, 0, "e-1", "é\\2"), *cross(FeedRules(), "B", "S-1", 0, 3, "e3")]
    assert len(changes) == 3
    assert outbox_from_wire(json.loads(outbox_json(changes))) == changes
