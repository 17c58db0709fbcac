"""ERP netting: postings per (SKU, location, movement type, window), revisions, conservation, and what a
crash at any point of a flush may send.

Expected quantities are worked by hand from DESIGN.md (`erp.movements`) or are properties of the contract:
conservation (Σ posted on-hand-moving qty == on_hand), one quantity per posting id, idempotent replay.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from availability.netting import Netting, Posting, closing_boundary, posting_id, totals, window_start
from availability.shard import PartitionState
from availability.wire import posting_record

from .test_shard import (
    HORIZON,
    NOW,
    ROUTED_CODE,
    T0,
    WINDOW,
    Shard,
    count,
    delta,
    ev,
    receipt,
    run,
    sale,
    snapshot,
    sources_of,
    steps,
    table_after,
    through_json,
)

W = 20_000  # a short window so that random histories (events over a minute) span several
GRACE = 5_000
LATER = NOW + 86_400_000  # a tick this late closes every window


def netted_state(partition: int = 0) -> PartitionState:
    return PartitionState(partition, horizon_ms=HORIZON, dedupe_window_ms=WINDOW, window_ms=W, grace_ms=GRACE)


def netted_shard() -> Shard:
    shard = Shard()
    shard.state = netted_state()
    return shard


def restore_netted(records: list[tuple[str, Any]]) -> PartitionState:
    state = netted_state()
    for key, value in records:
        state.load(key, through_json(value))
    return state


class Erp:
    """What the ERP has received: every posting id with the one posting it must always mean."""

    def __init__(self) -> None:
        self.by_id: dict[str, Posting] = {}
        self.deliveries = 0

    def receive(self, postings: list[Posting]) -> None:
        for posting in postings:
            self.deliveries += 1
            known = self.by_id.setdefault(posting.posting_id, posting)
            assert known == posting, f"posting id {posting.posting_id} sent as {known} and as {posting}"

    def on_hand(self) -> dict[tuple[str, str], int]:
        return totals(self.by_id.values())


def flush_and_send(state: PartitionState, erp: Erp, now: int = NOW) -> list[tuple[str, Any]]:
    """What the worker does: drain, write the records, send the postings, confirm them."""
    flush = state.drain(now)
    if flush is None:
        return []
    erp.receive(flush.postings)
    state.confirm(flush.postings)
    return [*flush.records, flush.marker]


def close_all(shard: Shard, erp: Erp) -> list[tuple[str, Any]]:
    shard.offsets[ROUTED_CODE] += 1_000  # past any tick a history pinned to its own offsets
    shard.tick(LATER)
    return flush_and_send(shard.state, erp, LATER)


def assert_conserved(state: PartitionState, erp: Erp) -> None:
    posted = erp.on_hand()
    damaged: dict[tuple[str, str], int] = defaultdict(int)
    for posting in erp.by_id.values():
        if posting.movement_type == "return_damaged":
            damaged[(posting.sku, posting.location_id)] += posting.qty
    for sku, loc, position in state.positions():
        assert posted.get((sku, loc), 0) == position.on_hand, (sku, loc)
        assert damaged.get((sku, loc), 0) == position.damaged, (sku, loc)


# ---- the pieces -------------------------------------------------------------------------------------

def test_windows_and_closing_boundary() -> None:
    assert window_start(T0 + 299_999, 300_000) == T0
    assert window_start(T0 + 300_000, 300_000) == T0 + 300_000
    # The window [T0, T0+300 s) is closed once the clock is 60 s past its end, not before.
    assert closing_boundary(T0 + 359_999, 300_000, 60_000) == T0
    assert closing_boundary(T0 + 360_000, 300_000, 60_000) == T0 + 300_000


def test_posting_ids_are_deterministic_and_name_every_part() -> None:
    base = ("A", "S1", "sale", T0, 1)
    assert posting_id(*base) == posting_id(*base)
    variants = [("B", "S1", "sale", T0, 1), ("A", "S2", "sale", T0, 1), ("A", "S1", "return", T0, 1),
                ("A", "S1", "sale", T0 + W, 1), ("A", "S1", "sale", T0, 2), ("A|S", "1", "sale", T0, 1)]
    assert len({posting_id(*v) for v in [base, *variants]}) == len(variants) + 1


def test_netting_survives_its_wire_form() -> None:
    netting = Netting()
    netting.add("A", "sale", T0, -3)
    netting.close("S1", T0 + W, W)
    netting.add("A", "sale", T0, -1)
    netting.add("B", "receipt", T0 + W, 4)
    again = Netting.from_wire(through_json(netting.to_wire()))
    assert (again.pending, again.outbox, again.closed_before, again.late_closes) == (
        netting.pending, netting.outbox, netting.closed_before, netting.late_closes)


def _fields(netting: Netting) -> tuple[Any, ...]:
    return netting.pending, netting.outbox, netting.closed_before, netting.late_closes


def test_closing_windows_is_a_record_of_changes_that_restores_exactly() -> None:
    # A busy bucket: many entries pending in the next window, two in a window that closes. The close, a
    # late entry of the closed window, a new entry and a confirmation travel as changes on top of the
    # full record, and the two together give back the netting as it is.
    netting = Netting()
    for i in range(10):
        netting.add(f"K{i}", "sale", T0 + W, -1)
    netting.add("A", "sale", T0, -3)
    netting.add("B", "receipt", T0, 4)
    full = through_json(netting.to_json())
    posted = netting.close("S1", T0 + W, W)
    assert [p.sku for p in posted] == ["A", "B"]
    netting.add("A", "sale", T0, -1)  # late behind the posting: a further revision, pending again
    netting.add("K0", "sale", T0 + W, -2)
    netting.confirm({posted[1].posting_id})
    assert 2 * netting.changes < len(netting.pending)  # well under a rebase
    changes = through_json(netting.changes_json())
    restored = Netting.from_wire(full)
    restored.apply_changes(changes)
    assert _fields(restored) == _fields(netting)
    # Records of changes follow each other: closing more, in the netting or in its restored copy, writes
    # a second record that the full record and the first, restored in order, complete exactly.
    for one in (netting, restored):
        one.close("S1", T0 + 2 * W, W)
    for second in (netting.changes_json(), restored.changes_json()):
        again = Netting.from_wire(full)
        again.apply_changes(changes)
        again.apply_changes(through_json(second))
        assert _fields(again) == _fields(netting)


def test_a_closing_flush_of_a_busy_bucket_writes_changes_not_the_bucket() -> None:
    shard = netted_shard()
    shard.send(receipt("S1", *[(f"K{i}", 5) for i in range(20)], at=T0 + W + 1_000))
    shard.send(sale("S1", ("K1", 1), at=T0 + 1_000))  # in the earlier window, which the tick closes
    first = shard.state.drain(NOW)
    assert first is not None
    shard.tick(T0 + W + W // 2 + GRACE)
    flush = shard.state.drain(NOW + 1)
    assert flush is not None
    assert [p.qty for p in flush.postings] == [-1]
    assert {key[0] for key, _ in flush.records} == {"c"}
    restored = restore_netted(table_after([*first.records, first.marker], [*flush.records, flush.marker]))
    assert restored.outbox() == flush.postings
    assert snapshot(restored) == snapshot(shard.state)


def test_posting_record_has_the_contract_fields() -> None:
    posting = Posting(posting_id("A", "S1", "sale", T0, 1), "A", "S1", "sale", -5, T0, T0 + 300_000, 1, 3,
                      ("e-1", "e-2", "e-3"))
    assert posting_record(posting) == {
        "posting_id": posting.posting_id, "sku": "A", "location_id": "S1", "movement_type": "sale", "qty": -5,
        "window_start": "2024-01-01T00:00:00.000Z", "window_end": "2024-01-01T00:05:00.000Z", "revision": 1,
        "event_count": 3, "event_ids": ["e-1", "e-2", "e-3"]}


def test_a_posting_names_its_first_events() -> None:
    shard, erp = netted_shard(), Erp()
    for i in range(8):
        shard.send(sale("S1", ("A", 1), at=T0 + i * 100, event_id=f"s{i}"))
    flush_and_send(shard.state, erp)
    close_all(shard, erp)
    (posting,) = erp.by_id.values()
    assert (posting.event_count, posting.event_ids) == (8, ("s0", "s1", "s2", "s3", "s4"))


def test_pending_entries_stored_before_postings_named_events_still_load() -> None:
    old = {"n": [["A", "sale", T0, -3, 2]], "o": [["p", "A", "S1", "sale", -1, T0, T0 + 1, 1, 1]], "c": 0, "s": 0}
    netting = Netting.from_wire(old)
    assert netting.pending == {("A", "sale", T0): (-3, 2, ())}
    assert netting.outbox[0].event_ids == ()


# ---- netting in a partition -------------------------------------------------------------------------

def test_a_burst_of_sales_in_one_window_is_one_posting() -> None:
    shard, erp = netted_shard(), Erp()
    for i in range(50):
        shard.send(sale("S1", ("A", 1 + i % 3), at=T0 + i * 100))
    shard.send(receipt("S1", ("A", 7), at=T0 + 6_000))
    flush_and_send(shard.state, erp)
    assert erp.by_id == {}  # the window is still open
    close_all(shard, erp)
    postings = sorted(erp.by_id.values(), key=lambda p: p.movement_type)
    sold = sum(1 + i % 3 for i in range(50))
    assert [(p.movement_type, p.qty, p.event_count, p.revision, p.window_start_ms, p.window_end_ms)
            for p in postings] == [("receipt", 7, 1, 1, T0, T0 + W), ("sale", -sold, 50, 1, T0, T0 + W)]
    assert shard.pos("S1", "A").on_hand == 7 - sold
    assert_conserved(shard.state, erp)


def test_a_window_closes_only_after_its_end_plus_the_grace() -> None:
    shard, erp = netted_shard(), Erp()
    shard.send(sale("S1", ("A", 2), at=T0 + 1_000))
    shard.tick(T0 + W + GRACE - 1)
    flush_and_send(shard.state, erp)
    assert erp.by_id == {}
    shard.tick(T0 + W + GRACE)
    flush_and_send(shard.state, erp)
    assert [(p.qty, p.revision) for p in erp.by_id.values()] == [(-2, 1)]


def test_event_time_closes_a_window_when_ticks_lag() -> None:
    shard, erp = netted_shard(), Erp()
    shard.send(sale("S1", ("A", 2), at=T0 + 1_000))
    shard.send(sale("S1", ("B", 1), at=T0 + 3 * W))  # event time is now three windows further
    shard.tick(T0)  # a wall clock behind the events
    flush_and_send(shard.state, erp)
    assert [(p.sku, p.qty) for p in erp.by_id.values()] == [("A", -2)]


def test_a_late_event_is_a_further_revision_with_only_its_quantity() -> None:
    shard, erp = netted_shard(), Erp()
    shard.send(sale("S1", ("A", 2), at=T0 + 1_000))
    shard.send(sale("S1", ("A", 3), at=T0 + 2_000))
    close_all(shard, erp)
    shard.send(sale("S1", ("A", 4), at=T0 + 3_000))  # occurred in the closed window
    close_all(shard, erp)
    by_revision = {p.revision: p for p in erp.by_id.values()}
    assert sorted(by_revision) == [1, 2]
    assert (by_revision[1].qty, by_revision[1].event_count) == (-5, 2)
    assert (by_revision[2].qty, by_revision[2].event_count, by_revision[2].window_start_ms) == (-4, 1, T0)
    assert by_revision[2].posting_id == posting_id("A", "S1", "sale", T0, 2)
    shard.send(sale("S1", ("A", 1), at=T0 + 4_000))
    close_all(shard, erp)
    assert sorted(p.revision for p in erp.by_id.values()) == [1, 2, 3]
    assert_conserved(shard.state, erp)


def test_a_late_movement_behind_a_count_is_posted_with_its_offset() -> None:
    shard, erp = netted_shard(), Erp()
    shard.send(receipt("S1", ("A", 10), at=T0 + 1_000))
    shard.send(count("S1", ("A", 8), at=T0 + 2 * W))  # implies -2
    close_all(shard, erp)
    shard.send(sale("S1", ("A", 3), at=T0 + 1_500))  # late, covered by the count: on_hand stays 8
    close_all(shard, erp)
    got = sorted((p.movement_type, p.qty, p.window_start_ms, p.revision) for p in erp.by_id.values())
    assert got == [("adjustment", -2, T0 + 2 * W, 1), ("adjustment", 3, T0, 2), ("receipt", 10, T0, 1),
                   ("sale", -3, T0, 2)]
    assert shard.pos("S1", "A").on_hand == 8
    assert_conserved(shard.state, erp)


def test_movements_that_net_to_zero_post_nothing() -> None:
    shard, erp = netted_shard(), Erp()
    shard.send(delta("S1", ("A", 5), at=T0 + 1_000))
    shard.send(delta("S1", ("A", -5), at=T0 + 2_000))
    shard.send(ev("return", location_id="S1", at=T0 + 2_500,
                  lines=[{"sku": "A", "qty": 2, "disposition": "damaged"}]))
    shard.send(ev("reservation", location_id="S1", reservation_id="R1", action="hold", at=T0 + 2_600,
                  lines=[{"sku": "B", "qty": 1}]))  # reservations post nothing
    close_all(shard, erp)
    assert [(p.movement_type, p.qty) for p in erp.by_id.values()] == [("return_damaged", 2)]
    assert_conserved(shard.state, erp)


def test_the_outbox_keeps_closed_postings_until_confirmed() -> None:
    shard = netted_shard()
    shard.send(sale("S1", ("A", 2), at=T0 + 1_000))
    shard.tick(LATER)
    flush = shard.state.drain(LATER)
    assert flush is not None
    assert [p.qty for p in flush.postings] == [-2]
    restored = restore_netted([*flush.records, flush.marker])  # crash before the send
    assert restored.outbox() == flush.postings
    shard.state.confirm(flush.postings)
    assert shard.state.outbox() == []
    after = shard.state.drain(LATER)  # the confirmation rewrites the bucket without its outbox
    assert after is not None
    assert after.postings == []
    assert restore_netted(table_after([*flush.records, flush.marker], [*after.records, after.marker])).outbox() == []


def test_outboxes_re_sent_whole_after_a_load_are_confirmed_at_once() -> None:
    shard = netted_shard()
    shard.send(sale("S1", ("A", 2), ("B", 1), at=T0 + 1_000))
    shard.send(sale("S2", ("A", 1), at=T0 + 1_500))
    shard.tick(LATER)
    flush = shard.state.drain(LATER)
    assert flush is not None
    stored = [*flush.records, flush.marker]
    restored = restore_netted(stored)  # crash before the send: the load re-sends both outboxes whole
    assert sorted(restored.outbox()) == sorted(flush.postings)
    restored.confirm_outboxes()
    assert (restored.outbox(), restored.change_outbox()) == ([], [])
    after = restored.drain(LATER)  # the confirmation rewrites the buckets without their outboxes
    assert after is not None
    assert restore_netted(table_after(stored, [*after.records, after.marker])).outbox() == []
    assert snapshot(restore_netted(table_after(stored, [*after.records, after.marker]))) == snapshot(shard.state)


# ---- properties -------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(history=steps(max_size=25))
def test_posted_quantities_conserve_on_hand(history: list[Any]) -> None:
    shard, erp = netted_shard(), Erp()
    for item, now in history:
        run(shard, [(item, now)])
        flush_and_send(shard.state, erp, now)
    close_all(shard, erp)
    assert_conserved(shard.state, erp)
    assert shard.state.outbox() == []


@settings(max_examples=200, deadline=None)
@given(history=steps(max_size=20), data=st.data())
def test_replaying_applied_events_posts_nothing_new(history: list[Any], data: st.DataObject) -> None:
    shard, erp = netted_shard(), Erp()
    run(shard, history)
    close_all(shard, erp)
    posted = dict(erp.by_id)
    start = data.draw(st.integers(0, len(history)))
    run(shard, history[start:])  # redelivered at new offsets: the event ids are known
    close_all(shard, erp)
    assert erp.by_id == posted


def _crash_and_recover(history: list[Any], split: int, keep: int, sent: bool) -> tuple[Erp, Shard, Shard]:
    """Run ``history[:split]`` and flush it (sent); run the rest and crash inside its flush after ``keep``
    records (``sent``: after all records and the send, before anything else). Recover, re-send the
    outbox, replay the rest from its first offset, close every window. Returns the ERP's view, the
    recovered shard and a shard that never crashed."""
    sources = sources_of(history)
    first, second = history[:split], history[split:]
    erp = Erp()
    crashed = netted_shard()
    run(crashed, first, sources[:split])
    one = flush_and_send(crashed.state, erp)
    run(crashed, second, sources[split:])
    flush = crashed.state.drain(NOW + 10 * 60_000)
    two = [*flush.records, flush.marker] if flush else []
    if sent and flush is not None:
        erp.receive(flush.postings)  # crash after the send, before the offsets were committed
        keep = len(two)
    recovered = netted_shard()
    recovered.state = restore_netted(table_after(one, two[:keep]))
    erp.receive(recovered.state.outbox())  # what the worker sends again when it loads the partition
    recovered.state.confirm(recovered.state.outbox())
    run(recovered, second, sources[split:])
    flush_and_send(recovered.state, erp)
    close_all(recovered, erp)
    calm = netted_shard()
    run(calm, history, sources)
    close_all(calm, Erp())
    return erp, recovered, calm


@settings(max_examples=300, deadline=None)
@given(history=steps(max_size=20), data=st.data())
def test_a_crash_at_any_point_never_gives_an_id_two_quantities(history: list[Any], data: st.DataObject) -> None:
    split = data.draw(st.integers(0, len(history)))
    keep = data.draw(st.integers(0, 40))
    sent = data.draw(st.booleans())
    erp, recovered, calm = _crash_and_recover(history, split, keep, sent)  # Erp.receive asserts one quantity per id
    assert snapshot(recovered.state) == snapshot(calm.state)
    assert_conserved(recovered.state, erp)  # nothing lost, nothing posted twice under two ids


def test_crash_at_every_record_of_a_closing_flush() -> None:
    history = [(receipt("S1", ("A", 10), ("B", 5), event_id="e1", at=T0 + 1_000), NOW),
               (sale("S1", ("A", 2), event_id="e2", at=T0 + 2_000), NOW),
               (receipt("S2", ("A", 1), event_id="e3", at=T0 + 1_000), NOW),
               ("tick", LATER),
               (sale("S1", ("A", 1), ("B", 1), event_id="e4", at=T0 + 3_000), LATER),  # late
               (count("S2", ("A", 4), event_id="e5", at=T0 + 2 * W), LATER),
               ("tick", LATER + 1)]
    for split in range(len(history) + 1):
        for keep in range(12):
            for sent in (False, True):
                erp, recovered, calm = _crash_and_recover(history, split, keep, sent)
                assert snapshot(recovered.state) == snapshot(calm.state), (split, keep, sent)
                assert_conserved(recovered.state, erp)
                assert {p.revision for p in erp.by_id.values()} <= {1, 2}
