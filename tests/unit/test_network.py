"""A channel's network ATS crossings: what an owner sends for a changed position, how the SKU's partition
sums the shares and judges them flush to flush, and that a crash anywhere in a flush loses no crossing.

Expected records are worked by hand from the rules in :mod:`availability.network` (network ATS = Σ over
eligible locations of max(0, ATS - buffer)), or are properties of the sent stream: per channel and
threshold the records alternate and the last agrees with the network ATS of the last values sent.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.channels import ChannelView, ChannelViews, channel_ats, network_ats, parse_channels
from availability.feed import Change, change_record, outbox_from_wire, outbox_json
from availability.network import (
    NETWORK_BACK_IN_STOCK,
    NETWORK_LOW_STOCK,
    NETWORK_LOW_STOCK_RECOVERED,
    NETWORK_OUT_OF_STOCK,
    Entry,
    NetworkRules,
    Watched,
    crossings,
    entries_from_wire,
    network_records,
    network_rules,
    sku_partition,
)
from availability.networkstate import BUCKETS, bucket_of
from availability.shard import PartitionState, Source
from availability.topics import NETWORK, TOPIC_CODE

from .test_shard import HORIZON, NOW, T0, WINDOW, Shard, receipt, sale, table_after, through_json

NET = TOPIC_CODE[NETWORK]
#: ecom sells from every location and holds 1 back at each, low below 3; pickup sells from S1 and S2 only
VIEWS = parse_channels('{"channels": {"ecom": {"locations": "all", "default_buffer": 1, "low_stock": 3},'
                       ' "pickup": {"locations": ["S1", "S2"]}}}')
RULES = network_rules(VIEWS)


def kinds(changes: list[Change]) -> list[tuple[str | None, str, int, int, int]]:
    return [(c.channel, c.kind, c.previous_ats, c.ats, c.threshold) for c in changes]


def new_state(partition: int = 0, rules: NetworkRules = RULES) -> PartitionState:
    return PartitionState(partition, horizon_ms=HORIZON, dedupe_window_ms=WINDOW, network=rules)


def restore(table: list[tuple[str, Any]], partition: int = 0) -> PartitionState:
    state = new_state(partition)
    for key, value in table:
        state.load(key, through_json(value))
    return state


# ---- the rules, by hand --------------------------------------------------------------------------------

def test_every_channel_of_the_file_is_watched_with_its_level() -> None:
    assert [(w.channel, w.level) for w in RULES.channels] == [("ecom", 3), ("pickup", 0)]
    assert network_rules(ChannelViews()).channels == ()  # no channel: nothing watched, nothing sent


def test_a_position_is_sent_only_when_a_watched_share_changes() -> None:
    assert RULES.share_changed("S1", 5, 4)  # ecom 4 → 3, pickup 5 → 4
    assert RULES.share_changed("S9", 3, 2)  # ecom only (S9 does not sell to pickup): 2 → 1
    assert not RULES.share_changed("S9", 1, 0)  # ecom holds 1 back: 0 → 0; pickup: not eligible
    assert not RULES.share_changed("S1", 4, 4)
    assert RULES.shares("S1", 3) == (2, 3)
    assert RULES.shares("S9", 3) == (2, 0)
    assert RULES.totals({"S1": 3, "S2": 1, "S9": 5}) == (2 + 0 + 4, 3 + 1)


def view(listed: set[str], default: int, buffers: dict[str, int]) -> ChannelView:
    """A channel of the listed locations (none: all), with buffers at some of them."""
    return ChannelView(locations=sorted(listed) if listed else "all", default_buffer=default,
                       buffers={k: v for k, v in buffers.items() if not listed or k in listed})


views = st.builds(view, st.sets(st.sampled_from(["S1", "S2", "S3"])), st.integers(0, 3),
                  st.dictionaries(st.sampled_from(["S1", "S2", "S3"]), st.integers(0, 3)))


@settings(max_examples=200, deadline=None)
@given(watched=st.lists(views, min_size=1, max_size=3),
       stock=st.dictionaries(st.sampled_from(["S1", "S2", "S3", "S4"]), st.integers(0, 9)),
       before=st.integers(0, 9), after=st.integers(0, 9))
def test_the_rules_agree_with_the_channels_network_ats(watched: list[ChannelView], stock: dict[str, int],
                                                       before: int, after: int) -> None:
    rules = NetworkRules(tuple(Watched(f"c{i}", view, 0) for i, view in enumerate(watched)))
    assert rules.totals(stock) == tuple(network_ats(view, stock) for view in watched)
    for location in ("S1", "S4"):
        assert rules.shares(location, after) == tuple(channel_ats(view, location, after) for view in watched)
        assert rules.share_changed(location, before, after) == any(
            channel_ats(view, location, before) != channel_ats(view, location, after) for view in watched)


def test_the_crossings_of_a_channels_network() -> None:
    def cross(before: tuple[int, int], after: tuple[int, int]) -> list[tuple[Any, ...]]:
        return kinds(crossings(RULES, "A", before, after, "network@0:7", NOW - 5, NOW, ("e1", None, "e1")))

    assert cross((5, 4), (0, 0)) == [("ecom", NETWORK_OUT_OF_STOCK, 5, 0, 1), ("ecom", NETWORK_LOW_STOCK, 5, 0, 3),
                                     ("pickup", NETWORK_OUT_OF_STOCK, 4, 0, 1)]
    assert cross((0, 0), (2, 0)) == [("ecom", NETWORK_BACK_IN_STOCK, 0, 2, 1)]  # still below 3: low, no record
    assert cross((2, 0), (3, 0)) == [("ecom", NETWORK_LOW_STOCK_RECOVERED, 2, 3, 3)]
    assert cross((9, 2), (4, 1)) == []  # no threshold crossed
    [change] = crossings(RULES, "A", (1, 0), (0, 0), "network@0:7", NOW - 5, NOW, ("e1", None, "e1"))
    record = change_record(change)
    assert (record["location_id"], record["event_ids"]) == (None, ["e1"])
    assert (record["sku"], record["channel"], record["threshold"]) == ("A", "ecom", 1)


def test_the_id_names_the_crossing_and_the_record_that_caused_it() -> None:
    def one(cause: str, sku: str = "A") -> str:
        return crossings(RULES, sku, (1, 0), (0, 0), cause, NOW, NOW)[0].change_id

    assert one("network@0:7") == one("network@0:7")  # computed again: the same id
    assert len({one("network@0:7"), one("network@0:8"), one("network@1:7"), one("network@0:7", "B")}) == 4
    change = crossings(RULES, "A", (1, 0), (0, 0), "network@0:7", NOW, NOW + 9)[0]
    assert outbox_from_wire(json.loads(outbox_json([change]))) == [change]  # location null survives the outbox


# ---- the record on ats.network -----------------------------------------------------------------------------

def test_entries_are_packed_per_sku_partition_and_read_back() -> None:
    entries = [Entry(f"SKU-{i}", "S1", i, NOW, f"e{i}" if i % 2 else None) for i in range(40)]
    records = network_records(entries, 4, sender=2, limit=3)
    back: dict[int, list[Entry]] = {}
    for partition, text in records:
        value = json.loads(text)
        assert value["from"] == 2
        assert len(value["e"]) <= 3
        back.setdefault(partition, []).extend(entries_from_wire(value))
    for partition, received in back.items():
        assert received == [e for e in entries if sku_partition(e.sku, 4) == partition]  # in order, all of them
    assert sum(map(len, back.values())) == 40


@pytest.mark.parametrize("record", [
    [], {"v": 2, "e": []}, {"v": 1}, {"v": 1, "e": {}}, {"v": 1, "e": [["A", "S1", -1, 0, None]]},
    {"v": 1, "e": [["A", "S1", 1, 0]]}, {"v": 1, "e": [["A", 3, 1, 0, None]]}, {"v": 1, "e": [["A", "S", 1, 0, 5]]},
    {"v": 1, "e": [["A", "S1", True, 0, None]]}, {"v": 1, "e": [["A", "S1", 1, "0", None]]},
])
def test_a_record_that_is_not_the_format_is_refused(record: Any) -> None:
    with pytest.raises(ValueError, match=r"."):
        entries_from_wire(record)


# ---- through the partition states ----------------------------------------------------------------------

class Network:
    """Owners of locations and the partition that sums SKU "A", wired as the worker wires them: an owner's
    flush packs its changed positions into records; the SKU's partition applies each at the next offset."""

    def __init__(self) -> None:
        self.owner = Shard()
        self.owner.state = new_state(0)
        self.sums = new_state(1)
        self.offset = 0

    def deliver(self, entries: list[Entry]) -> None:
        for _, text in network_records(entries, 8, sender=0):
            source = Source(NET, self.offset)
            self.sums.apply_network(entries_from_wire(json.loads(text)), source)
            self.sums.consumed(source)
            self.offset += 1

    def flush(self, *events: dict[str, Any]) -> list[Change]:
        for event in events:
            self.owner.send(event)
        owner = self.owner.state.drain(NOW)
        self.deliver(list(owner.network) if owner else [])
        drained = self.sums.drain(NOW + 500)
        changes = list(drained.changes) if drained else []
        self.sums.confirm_changes(changes)
        return changes


def test_sales_at_two_locations_empty_the_network_once_and_a_receipt_brings_it_back() -> None:
    net = Network()
    assert kinds(net.flush(receipt("S1", ("A", 3)), receipt("S2", ("A", 2)))) == [
        ("ecom", NETWORK_BACK_IN_STOCK, 0, 3, 1), ("ecom", NETWORK_LOW_STOCK_RECOVERED, 0, 3, 3),  # 2 + 1
        ("pickup", NETWORK_BACK_IN_STOCK, 0, 5, 1)]
    burst = [sale("S1", ("A", 1), event_id=f"s1-{i}") for i in range(3)] + [sale("S2", ("A", 2), event_id="s2")]
    out = net.flush(*burst)
    assert kinds(out) == [("ecom", NETWORK_OUT_OF_STOCK, 3, 0, 1), ("ecom", NETWORK_LOW_STOCK, 3, 0, 3),
                          ("pickup", NETWORK_OUT_OF_STOCK, 5, 0, 1)]
    assert all(c.location_id is None and c.sku == "A" for c in out)
    assert set(out[0].event_ids) <= {"s1-2", "s2"}  # the owners name the sales that emptied their shelves
    assert net.flush(receipt("S9", ("A", 1))) == []  # ecom holds 1 back at S9, pickup does not sell from it
    assert kinds(net.flush(receipt("S2", ("A", 2), event_id="r9"))) == [
        ("ecom", NETWORK_BACK_IN_STOCK, 0, 1, 1), ("pickup", NETWORK_BACK_IN_STOCK, 0, 2, 1)]


def test_an_owner_sends_nothing_without_watched_channels() -> None:
    shard = Shard()
    shard.send(receipt("S1", ("A", 3)))
    flush = shard.state.drain(NOW)
    assert flush is not None
    assert list(flush.network) == []
    assert shard.state.network_snapshot() == []


def test_a_loaded_owner_sends_every_position_a_channel_sells_from_again() -> None:
    net = Network()
    net.owner.send(receipt("S1", ("A", 3), ("B", 1)))
    net.owner.send(sale("S9", ("C", 1)))
    flush = net.owner.state.drain(NOW)
    assert flush is not None
    table = table_after([*flush.records, flush.marker])
    assert sorted(restore(table).network_snapshot()) == [  # ATS 0 too: it may correct a lost "went to 0"
        Entry("A", "S1", 3, T0, None), Entry("B", "S1", 1, T0, None), Entry("C", "S9", 0, T0, None)]


def test_a_record_applied_again_changes_nothing() -> None:
    state = new_state(1)
    first = [Entry("A", "S1", 3, NOW, "e1"), Entry("A", "S2", 2, NOW, "e2")]
    state.apply_network(first, Source(NET, 0))
    flush = state.drain(NOW)
    assert flush is not None
    assert len(flush.changes) == 3
    stored = table_after([*flush.records, flush.marker])
    state.apply_network([Entry("A", "S1", 0, NOW, "e3")], Source(NET, 1))
    state.apply_network([Entry("A", "S1", 4, NOW, "e4")], Source(NET, 2))
    torn = state.drain(NOW)
    assert torn is not None
    assert torn.changes == []  # 3 + 1 → 1 + 2 → 3 + 1 within one flush: nothing crossed
    table = table_after(stored, torn.records)  # the sums stored, the marker not: the replay starts at 1 again
    again = restore(table, 1)
    again.apply_network([Entry("A", "S1", 0, NOW, "e3")], Source(NET, 1))
    assert not again.dirty  # already included: the network did not go out of pickup's low level again
    assert again.sums.totals("A") == (3 + 1, 4 + 2)
    again.apply_network([Entry("A", "S1", 1, NOW, "e5")], Source(NET, 3))
    assert again.sums.totals("A") == (0 + 1, 1 + 2)


# ---- properties ------------------------------------------------------------------------------------------

LOCATIONS = ["S1", "S2", "S9"]
#: one ats.network record: (sku, location, ATS) entries
plans = st.lists(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(LOCATIONS), st.integers(0, 5)),
                          min_size=1, max_size=4), min_size=1, max_size=25)


def entries(record: list[tuple[str, str, int]], number: int) -> list[Entry]:
    return [Entry(sku, location, ats, NOW + number, f"e{number}") for sku, location, ats in record]


def totals_after(plan: list[list[tuple[str, str, int]]], sku: str) -> tuple[int, ...]:
    last = {location: ats for record in plan for s, location, ats in record if s == sku}
    return RULES.totals(last)


def check_stream(sent: list[Change], plan: list[list[tuple[str, str, int]]]) -> None:
    """Deduplicated by id (an id sent twice carries the same record), per SKU, channel and threshold the
    records alternate, each starts where the one before ended, and the last agrees with the sums of the
    last values sent: nothing lost, nothing contradicted."""
    by_id: dict[str, Change] = {}
    for change in sent:
        assert by_id.setdefault(change.change_id, change) == change
    for sku in ("A", "B"):
        final = totals_after(plan, sku)
        for (channel, _, level), total in zip(RULES.channels, final, strict=True):
            for threshold in {1, level or 1}:
                below = True  # nothing is in stock at first
                ours = [c for c in by_id.values() if c.sku == sku and c.channel == channel and c.threshold == threshold]
                for change in ours:
                    assert (change.previous_ats < threshold) == below, ours
                    below = change.ats < threshold
                assert below == (total < threshold), (sku, channel, threshold, ours)


@settings(max_examples=200, deadline=None)
@given(plan=plans, data=st.data())
def test_one_record_per_crossing_of_the_flush_end_sums(plan: list[list[tuple[str, str, int]]],
                                                       data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(plan)), max_size=len(plan))) | {len(plan)})
    state = new_state(1)
    sent: list[Change] = []
    ends = [{"A": RULES.totals({}), "B": RULES.totals({})}]
    start = 0
    for cut in cuts:
        for number in range(start, cut):
            state.apply_network(entries(plan[number], number), Source(NET, number))
            state.consumed(Source(NET, number))
        flush = state.drain(NOW)
        sent += flush.changes if flush else []
        state.confirm_changes(flush.changes if flush else [])
        ends.append({sku: totals_after(plan[:cut], sku) for sku in ("A", "B")})
        start = cut
    expected = 0
    for before, after in itertools.pairwise(ends):
        for sku in ("A", "B"):
            for (_, _, level), was, now in zip(RULES.channels, before[sku], after[sku], strict=True):
                expected += ((was > 0) != (now > 0)) + bool(level and (was < level) != (now < level))
    assert len(sent) == expected
    check_stream(sent, plan)


@settings(max_examples=300, deadline=None)
@given(plan=plans, data=st.data())
def test_a_crash_anywhere_in_a_flush_loses_no_network_crossing(plan: list[list[tuple[str, str, int]]],
                                                               data: st.DataObject) -> None:
    """Flushes sent and confirmed; then one flush written up to any record (or whole, its crossings maybe
    sent but not confirmed), a crash, recovery from the changelog, the outbox sent again, ``ats.network``
    replayed from its beginning (what a bucket includes is skipped), a flush: every crossing is told."""
    split = data.draw(st.integers(0, len(plan)))
    state = new_state(1)
    table: list[tuple[str, Any]] = []
    sent: list[Change] = []
    for number in range(split):  # a flush after every record, sent and confirmed
        state.apply_network(entries(plan[number], number), Source(NET, number))
        state.consumed(Source(NET, number))
        flush = state.drain(NOW)
        if flush:
            table = table_after(table, [*flush.records, flush.marker])
            sent += flush.changes
            state.confirm_changes(flush.changes)
    for number in range(split, len(plan)):
        state.apply_network(entries(plan[number], number), Source(NET, number))
        state.consumed(Source(NET, number))
    torn = state.drain(NOW)
    records = [*torn.records, torn.marker] if torn else []
    keep = data.draw(st.integers(0, len(records)))
    table = table_after(table, records[:keep])
    if keep == len(records) and torn and data.draw(st.booleans()):
        sent += torn.changes  # sent, but the crash came before the confirmation was written
    recovered = restore(table, 1)
    outbox = recovered.change_outbox()
    sent += outbox
    recovered.confirm_changes(outbox)
    cuts = data.draw(st.sets(st.integers(0, len(plan) - 1)))  # the replay flushes where it likes
    for number, record in enumerate(plan):
        recovered.apply_network(entries(record, number), Source(NET, number))
        if number in cuts or number == len(plan) - 1:
            flush = recovered.drain(NOW)
            sent += flush.changes if flush else []
            recovered.confirm_changes(flush.changes if flush else [])
    check_stream(sent, plan)
    for sku in ("A", "B"):
        assert recovered.sums.totals(sku) == totals_after(plan, sku)


@settings(max_examples=100, deadline=None)
@given(plan=plans, data=st.data())
def test_the_sums_restore_from_full_and_change_records_alike(plan: list[list[tuple[str, str, int]]],
                                                             data: st.DataObject) -> None:
    """However the flushes fall (full records, change records on top, in any load order), a restored
    partition holds the sums of the last values."""
    state = new_state(1)
    table: list[tuple[str, Any]] = []
    for number, record in enumerate(plan):
        state.apply_network(entries(record, number), Source(NET, number))
        state.consumed(Source(NET, number))
        if data.draw(st.booleans()) or number == len(plan) - 1:
            flush = state.drain(NOW)
            if flush:
                table = table_after(table, [*flush.records, flush.marker])
    shuffled = data.draw(st.permutations(table))
    recovered = restore(list(shuffled), 1)
    for sku in ("A", "B"):
        assert recovered.sums.totals(sku) == totals_after(plan, sku)
    assert {key.split("|")[0] for key, _ in table} <= {"n", "o", "m"}
    assert all(0 <= bucket_of(sku) < BUCKETS for sku in ("A", "B"))
