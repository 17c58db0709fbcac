"""The input gate's rule on its own: the seek and the probe read of the log are recorded functions here;
the engine's tests exercise them against the real broker (tests/integration/test_recovery.py)."""

from __future__ import annotations

from streams.gate import InputGate, Verdict

TP = ("inventory.sales", 0)


class Log:
    """A partition's offsets as the broker holds them, and what the gate asked of it."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets
        self.seeks: list[int] = []
        self.probes: list[int] = []
        self.now = 0.0

    async def seek(self, tp: object, offset: int) -> None:
        self.seeks.append(offset)

    async def probe(self, tp: object, offset: int) -> int | None:
        self.probes.append(offset)
        return next((o for o in self.offsets if o >= offset), None)

    def gate(self) -> InputGate:
        return InputGate(self.seek, self.probe, retry_seconds=1.0, clock=lambda: self.now)


async def test_in_order_and_replayed_offsets_need_no_broker() -> None:
    log = Log(list(range(10)))
    gate = log.gate()
    assert await gate.admit(TP, 0, None) is Verdict.APPLY  # nothing consumed yet: start anywhere
    assert await gate.admit(TP, 5, 5) is Verdict.APPLY
    assert await gate.admit(TP, 3, 6) is Verdict.COVERED
    assert (log.probes, log.seeks) == ([], [])


async def test_skipped_records_are_held_back_and_sought_until_they_arrive() -> None:
    log = Log(list(range(100)))
    gate = log.gate()
    assert await gate.admit(TP, 44, 35) is Verdict.HOLD
    assert await gate.admit(TP, 45, 35) is Verdict.HOLD  # known: no second probe
    assert log.probes == [35]
    await gate.seek_due()
    await gate.seek_due()  # not again within retry_seconds
    assert log.seeks == [35]
    log.now = 1.5
    await gate.seek_due()  # the records did not come (the consumer dropped them again): once more
    assert log.seeks == [35, 35]
    assert await gate.admit(TP, 35, 35) is Verdict.APPLY
    await gate.seek_due()
    assert log.seeks == [35, 35]


async def test_a_hole_in_the_log_is_stepped_over_at_once() -> None:
    log = Log([*range(0, 10), *range(12, 20)])  # 10 and 11: a transaction marker, an aborted record
    gate = log.gate()
    assert await gate.admit(TP, 12, 10) is Verdict.APPLY
    await gate.seek_due()
    assert (log.probes, log.seeks, gate.holes) == ([10], [], 1)


async def test_a_hole_followed_by_skipped_records_seeks_to_the_end_of_the_hole() -> None:
    log = Log([*range(0, 10), *range(12, 40)])
    gate = log.gate()
    assert await gate.admit(TP, 30, 10) is Verdict.HOLD
    await gate.seek_due()
    assert log.seeks == [12]
    assert await gate.admit(TP, 12, 10) is Verdict.APPLY


async def test_a_log_that_does_not_answer_holds_and_asks_again() -> None:
    log = Log([])
    gate = log.gate()
    assert await gate.admit(TP, 7, 3) is Verdict.HOLD
    log.offsets = list(range(10))
    assert await gate.admit(TP, 7, 3) is Verdict.HOLD
    assert log.probes == [3, 3]
    await gate.seek_due()
    assert log.seeks == [3]


async def test_reset_forgets_pending_seeks() -> None:
    log = Log(list(range(10)))
    gate = log.gate()
    assert await gate.admit(TP, 8, 2) is Verdict.HOLD
    gate.reset()
    await gate.seek_due()
    assert log.seeks == []
