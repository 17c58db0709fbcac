"""streams.intake.Intake: what a batch takes of the fetched records, in what order, when it waits, and
what the consumer commits. The records are aiokafka's own ``ConsumerRecord``."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.intake import Intake

SALES, RETURNS, HOLDS = TP("pos.sales", 0), TP("pos.returns", 0), TP("pos.holds", 0)


def records(tp: TP, offsets: range, size: int = 100) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"S-1", b"{}", None, 3, size, ())
            for offset in offsets]


def taken(batch: list[tuple[TP, Any]]) -> list[tuple[str, list[int]]]:
    return [(tp.topic, [record.offset for record in slice_]) for tp, slice_ in batch]


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 5))


async def take(intake: Intake, max_size: int = 5_000, **options: Any) -> list[tuple[str, list[int]]]:
    defaults: dict[str, Any] = {"window_s": 0.0, "behind": lambda: False}
    return taken(await intake.take(max_size, **{**defaults, **options}))


def test_a_batch_takes_each_partition_in_offset_order_and_the_partitions_in_turn() -> None:
    async def scenario() -> list[list[tuple[str, list[int]]]]:
        intake = Intake({SALES.topic, RETURNS.topic}, max_records=1_000)
        intake.put(SALES, records(SALES, range(0, 6)))
        intake.put(SALES, records(SALES, range(6, 8)))  # a second fetch goes behind the first
        intake.put(RETURNS, records(RETURNS, range(10, 12)))
        return [await take(intake, max_size=4), await take(intake, max_size=4), await take(intake, max_size=4)]

    first, second, third = run(scenario())
    assert first == [("pos.sales", [0, 1]), ("pos.returns", [10, 11])], "a share each, not one partition's backlog"
    assert second == [("pos.sales", [2, 3, 4, 5])]
    assert third == [("pos.sales", [6, 7])]


def test_a_partition_a_batch_left_records_of_goes_last_in_the_next() -> None:
    async def scenario() -> list[list[tuple[str, list[int]]]]:
        intake = Intake({SALES.topic, RETURNS.topic}, max_records=1_000)
        intake.put(SALES, records(SALES, range(0, 4), size=600))
        intake.put(RETURNS, records(RETURNS, range(10, 14), size=600))
        return [await take(intake, max_bytes=1_000), await take(intake, max_bytes=1_000),
                await take(intake, max_bytes=1_000)]

    first, second, third = run(scenario())
    assert first == [("pos.sales", [0, 1])], "full at its bytes before the returns had their share"
    assert second == [("pos.returns", [10, 11])], "the returns' turn, not the sales' again"
    assert third == [("pos.sales", [2, 3])]


def test_a_batch_takes_the_first_topics_records_before_any_other() -> None:
    async def scenario() -> list[tuple[str, list[int]]]:
        intake = Intake({SALES.topic, HOLDS.topic}, max_records=1_000, first=[HOLDS.topic])
        intake.put(SALES, records(SALES, range(0, 10), size=600))
        intake.put(HOLDS, records(HOLDS, range(5, 7)))
        return await take(intake, max_bytes=1_000)

    assert run(scenario()) == [("pos.holds", [5, 6]), ("pos.sales", [0, 1])], "fetched later, taken first"


def test_a_batch_is_handled_in_two_parts_the_first_topics_alone_then_the_others() -> None:
    intake = Intake({SALES.topic, RETURNS.topic, HOLDS.topic}, max_records=1_000, first=[HOLDS.topic])
    sales, returns, holds = ((tp, records(tp, range(0, 2))) for tp in (SALES, RETURNS, HOLDS))
    assert [taken(part) for part in intake.parts([holds, sales, returns])] == [
        [("pos.holds", [0, 1])], [("pos.sales", [0, 1]), ("pos.returns", [0, 1])]], "a hold waits for no sale"
    assert intake.parts([sales, returns]) == [[sales, returns]]
    assert intake.parts([holds]) == [[holds]]


def test_a_batch_stops_at_its_bytes_and_takes_at_least_one_record() -> None:
    async def scenario() -> list[list[tuple[str, list[int]]]]:
        intake = Intake({SALES.topic}, max_records=1_000)
        intake.put(SALES, records(SALES, range(3), size=600))
        return [await take(intake, max_bytes=1_000), await take(intake, max_bytes=100)]

    assert run(scenario()) == [[("pos.sales", [0, 1])], [("pos.sales", [2])]]


def test_a_batch_waits_for_its_first_record_then_for_more_only_while_behind() -> None:
    async def scenario(behind: bool) -> list[tuple[str, list[int]]]:
        intake = Intake({SALES.topic}, max_records=1_000)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, intake.put, SALES, records(SALES, range(0, 1)))
        loop.call_later(0.1, intake.put, SALES, records(SALES, range(1, 2)))
        return await take(intake, window_s=0.5, behind=lambda: behind)

    assert run(scenario(False)) == [("pos.sales", [0])], "live traffic waits for no window"
    assert run(scenario(True)) == [("pos.sales", [0, 1])], "behind: the window fills the batch"


def test_a_rebalance_clears_it_and_a_seek_drops_the_partition_sought() -> None:
    async def scenario() -> tuple[int, list[tuple[str, list[int]]], int]:
        intake = Intake({SALES.topic, RETURNS.topic}, max_records=1_000)
        intake.put(SALES, records(SALES, range(3)))
        intake.put(RETURNS, records(RETURNS, range(3)))
        intake.drop(SALES)
        left = intake.count
        batch = await take(intake)
        intake.put(SALES, records(SALES, range(3, 5)))
        intake.clear()
        return left, batch, intake.count

    assert run(scenario()) == (3, [("pos.returns", [0, 1, 2])], 0)


def test_the_offsets_to_commit_are_the_ones_the_flushed_state_covers() -> None:
    intake = Intake({SALES.topic, RETURNS.topic}, max_records=1_000)
    intake.cover(0, {"pos.sales": 42, "pos.returns": None})  # none of the returns consumed yet
    intake.cover(1, {"pos.sales": 7})
    assert intake.covered == {SALES: 42, TP("pos.sales", 1): 7}
    intake.cover(0, {"pos.sales": 50})
    intake.uncover([TP("pos.sales", 1)])
    assert intake.covered == {SALES: 50}
