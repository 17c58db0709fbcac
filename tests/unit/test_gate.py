"""The input gate's rule on its own: the seek is a recorded function here; the engine's tests exercise
the gate with the log reader against the real broker (tests/integration/test_recovery.py)."""

from __future__ import annotations

from streams.gate import InputGate, Verdict

TP = ("inventory.sales", 0)


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[int] = []
        self.now = 0.0

    async def seek(self, tp: object, offset: int) -> None:
        self.seeks.append(offset)

    def gate(self) -> InputGate:
        return InputGate(self.seek, retry_seconds=1.0, clock=lambda: self.now)


def test_in_order_and_replayed_offsets() -> None:
    gate = Consumer().gate()
    assert gate.admit(TP, 0, None) is Verdict.APPLY  # nothing consumed yet: start anywhere
    assert gate.admit(TP, 5, 5) is Verdict.APPLY
    assert gate.admit(TP, 3, 6) is Verdict.COVERED


def test_an_offset_past_the_expected_one_is_a_gap_to_read_from_the_log() -> None:
    gate = Consumer().gate()
    assert gate.admit(TP, 44, 35) is Verdict.GAP
    assert gate.admit(TP, 45, 35) is Verdict.GAP  # not held: the engine reads every gap it meets
    assert gate.gaps == 2


async def test_when_the_log_does_not_answer_the_partition_is_held_and_sought_back_until_it_arrives() -> None:
    consumer = Consumer()
    gate = consumer.gate()
    assert gate.admit(TP, 44, 35) is Verdict.GAP
    gate.hold(TP, 35)
    assert gate.admit(TP, 45, 35) is Verdict.HOLD
    await gate.seek_due()
    await gate.seek_due()  # not again within retry_seconds
    assert consumer.seeks == [35]
    consumer.now = 1.5
    await gate.seek_due()
    assert consumer.seeks == [35, 35]
    assert gate.admit(TP, 35, 35) is Verdict.APPLY
    await gate.seek_due()
    assert consumer.seeks == [35, 35]


async def test_reset_forgets_pending_seeks() -> None:
    consumer = Consumer()
    gate = consumer.gate()
    gate.hold(TP, 2)
    gate.reset()
    await gate.seek_due()
    assert consumer.seeks == []
