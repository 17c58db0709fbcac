"""A crash inside a flush, then a replay whose inputs interleave differently than the first time.

One event can reach a partition on two inputs: on its own topic (a producer's retry, keyed right) and
on ``ats.routed`` (an earlier copy that arrived on a wrong key and was re-routed). After a crash the
worker replays every input from the offsets its last marker names, but nothing orders one input
against another: the copies may come back in the opposite order. The state a torn flush left (some
bucket records stored, the ids record not) must still take each event exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from availability.shard import Source
from availability.topics import TOPIC_CODE, TOPIC_FOR_TYPE

from .test_shard import (
    LOCS,
    NOW,
    ROUTED_CODE,
    SKUS,
    T0,
    Shard,
    count,
    delta,
    ev,
    hold,
    receipt,
    restore,
    sale,
    snapshot,
    table_after,
    transfer,
)

Step = tuple[dict[str, Any], bool]  # (event, arrives on ats.routed)


@st.composite
def movements(draw: st.DrawFn, max_size: int = 14) -> list[Step]:
    """Order-independent events (movements and counts), some delivered twice on different inputs."""
    out: list[Step] = []
    for i in range(draw(st.integers(1, max_size))):
        loc = draw(st.sampled_from(LOCS))
        at = T0 + draw(st.integers(0, 60)) * 1_000
        eid = f"e{i}"
        pairs = [(sku, draw(st.integers(1, 9)))
                 for sku in draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))]
        kind = draw(st.sampled_from(["receipt", "sale", "return", "delta", "count", "shipped"]))
        raw: dict[str, Any]
        if kind == "receipt":
            raw = receipt(loc, *pairs, at=at, event_id=eid)
        elif kind == "sale":
            raw = sale(loc, *pairs, at=at, event_id=eid)
        elif kind == "return":
            raw = ev("return", at=at, event_id=eid, location_id=loc,
                     lines=[{"sku": s, "qty": q, "disposition": "sellable"} for s, q in pairs])
        elif kind == "delta":
            raw = delta(loc, *pairs, at=at, event_id=eid)
        elif kind == "count":
            raw = count(loc, *pairs, at=at, event_id=eid)
        else:
            raw = transfer("shipped", loc, LOCS[1 - LOCS.index(loc)], *pairs, at=at, event_id=eid,
                           transfer_id=f"t{i}")
        routed = draw(st.booleans())
        out.append((raw, routed))
        if draw(st.integers(0, 3)) == 0:  # the other copy, on the other input, now or later
            out.insert(draw(st.integers(len(out), len(out))), (raw, not routed))
    return out


def _code(step: Step) -> int:
    raw, routed = step
    return ROUTED_CODE if routed else TOPIC_CODE[TOPIC_FOR_TYPE[raw["type"]]]


def _sources(steps: list[Step]) -> list[Source]:
    offsets: dict[int, int] = defaultdict(int)
    out = []
    for step in steps:
        code = _code(step)
        out.append(Source(code, offsets[code]))
        offsets[code] += 1
    return out


def _send(shard: Shard, steps: list[tuple[Step, Source]]) -> None:
    for (raw, routed), source in steps:
        shard.send(raw, NOW, source=source, routed=routed)


@settings(max_examples=400, deadline=None)
@given(steps=movements(), data=st.data())
def test_a_torn_flush_replayed_in_another_interleaving_takes_each_event_once(steps: list[Step],
                                                                            data: st.DataObject) -> None:
    sources = _sources(steps)
    split = data.draw(st.integers(0, len(steps)), label="split")
    first, second = list(zip(steps, sources, strict=True))[:split], list(zip(steps, sources, strict=True))[split:]

    calm = Shard()
    _send(calm, first)
    flushed = calm.state.drain(NOW)
    stored = [*flushed.records, flushed.marker] if flushed else []
    _send(calm, second)
    torn = calm.state.drain(NOW + 1)
    torn_records = [*torn.records, torn.marker] if torn else []
    keep = data.draw(st.integers(0, len(torn_records)), label="records stored of the torn flush")

    # Replay every input from where the stored marker left it; one input may overtake another.
    queues: dict[int, list[tuple[Step, Source]]] = defaultdict(list)
    for item in second:
        queues[item[1].code].append(item)
    replay = []
    while any(queues.values()):
        code = data.draw(st.sampled_from(sorted(c for c, q in queues.items() if q)), label="next input")
        replay.append(queues[code].pop(0))

    recovered = Shard()
    recovered.state = restore(table_after(stored, torn_records[:keep]))
    _send(recovered, replay)
    assert _positions(recovered) == _positions(calm)


def _positions(shard: Shard) -> dict[tuple[str, str], Any]:
    """The positions; the movement log behind counts sums per time (how it merges is arrival order)."""
    return {key: position._replace(log=_net(position.log)) for key, position in snapshot(shard.state)[0].items()}


def _net(log: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    by_time: dict[int, int] = defaultdict(int)
    for at, qty in log:
        by_time[at] += qty
    return tuple(sorted((at, qty) for at, qty in by_time.items() if qty))


def test_a_hold_stored_in_a_torn_flush_and_replayed_by_its_other_copy_reserves_once() -> None:
    reservations = TOPIC_CODE[TOPIC_FOR_TYPE["reservation"]]
    calm = Shard()
    calm.send(receipt("S1", ("A", 5), event_id="e0"))
    first = calm.state.drain(NOW)
    assert first is not None
    placed = hold("S1", "R1", ("A", 2), event_id="e1")
    calm.send(placed, NOW, source=Source(ROUTED_CODE, 0), routed=True)  # the wrong-key copy, re-routed
    torn = calm.state.drain(NOW + 1)
    assert torn is not None
    buckets_only = [record for record in torn.records if record[0].startswith("b|")]

    recovered = Shard()
    recovered.state = restore(table_after([*first.records, first.marker], buckets_only))
    recovered.send(placed, NOW + 5, source=Source(reservations, 0))  # the producer's retry, on its own topic
    recovered.send(placed, NOW + 5, source=Source(ROUTED_CODE, 0), routed=True)
    position = recovered.pos("S1", "A")
    assert (position.on_hand, position.reserved) == (5, 2)
    assert recovered.state.holds["R1"].status == "held"
