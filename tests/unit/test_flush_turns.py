"""The flush schedule on its own (:func:`streams.engine.turn_due`): each partition flushes once an
interval, at its own turn, so a worker's partitions flush one after another, never all together; a batch
flushes a few of those due at most, those waiting longest first (:func:`streams.engine.longest_waiting`)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from streams.engine import longest_waiting, turn_due


def _flushes(partition: int, partitions: int, interval: float, until: float, step: float) -> list[float]:
    """When ``partition`` flushes if the agent asks every ``step`` seconds (its batches) until ``until``."""
    last = 0.0  # the worker started
    flushed = []
    for tick in range(int(until / step) + 1):
        now = tick * step
        if turn_due(partition, partitions, interval, last, now):
            flushed.append(now)
            last = now
    return flushed


def test_the_partitions_of_a_worker_take_turns_over_the_interval() -> None:
    firsts = [_flushes(p, 8, 1.0, 3.0, 0.01)[0] for p in range(8)]
    turns = [1.0, *(p / 8 for p in range(1, 8))]  # partition 0's turn is at 0 (the worker's start), then 1
    assert all(turn <= at < turn + 0.01 for at, turn in zip(firsts, turns, strict=True)), firsts


@given(partition=st.integers(0, 31), partitions=st.integers(1, 32), interval=st.floats(0.05, 5.0),
       step=st.floats(0.001, 0.2))
def test_once_an_interval_and_never_more_than_an_interval_and_a_batch_apart(
        partition: int, partitions: int, interval: float, step: float) -> None:
    partition %= partitions
    flushed = _flushes(partition, partitions, interval, 20 * interval, step)
    gaps = [later - earlier for earlier, later in pairwise(flushed)]
    assert all(gap <= interval + step + 1e-9 for gap in gaps)
    assert all(gap >= interval - step - 1e-9 for gap in gaps)


def test_a_batch_flushes_the_partitions_waiting_longest_and_leaves_the_others_for_the_next() -> None:
    flushed_at = {0: 5.0, 1: 2.0, 2: 9.0, 3: 2.0}  # 4 has never flushed: since the worker started, at 1.0
    assert longest_waiting({0, 1, 2, 3, 4}, flushed_at, never=1.0, limit=2) == {4, 1}, "ties: the lower partition"
    assert longest_waiting({0, 2, 3}, flushed_at, never=1.0, limit=2) == {3, 0}
    assert longest_waiting({2}, flushed_at, never=1.0, limit=2) == {2}
