"""The worker's record of when each location last spoke (streams/silence.py) and when a record arrived
(no broker, no cache: the pipeline is a recorder of the commands the engine's write would send)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.structs import ConsumerRecord

from availability import topics
from availability.silence import Calendar, Heard, decode
from streams.engine import _arrival_ms
from streams.silence import LocationClocks

NOW = 1_764_842_400_000


class Pipe:
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def hset(self, key: str, mapping: dict[str, bytes]) -> None:
        self.commands.append((key, mapping))


def written(clocks: LocationClocks, whole: tuple[int, ...] = ()) -> dict[str, Heard | None]:
    pipe = Pipe()
    clocks.write(pipe, whole)
    assert all(key == topics.LOCATIONS_KEY for key, _ in pipe.commands)
    return {location: decode(raw) for _, mapping in pipe.commands for location, raw in mapping.items()}


def clocks() -> LocationClocks:
    return LocationClocks(lambda location: int(location[-1]) % 2, silent_after_s=60, calendar=Calendar())


def test_times_only_move_forward_and_only_changes_are_written() -> None:
    c = clocks()
    c.heard(0, "S-0", 1_000, 5_000)
    c.heard(0, "S-0", 900, 6_000)  # a late event arriving later: arrival moves, business time stays
    assert written(c) == {"S-0": Heard(1_000, 6_000)}
    c.heard(0, "S-0", 800, 5_500)  # older on both counts (a replay): nothing to write
    assert written(c) == {}
    c.heard(0, "S-0", 2_000, 5_000)
    assert written(c) == {"S-0": Heard(2_000, 6_000)}


def test_a_partition_written_whole_writes_every_location_it_knows() -> None:
    c = clocks()
    c.heard(0, "S-0", 1, 1)
    c.heard(1, "S-1", 2, 2)
    written(c)
    assert written(c, (1,)) == {"S-1": Heard(2, 2)}


def test_the_gauge_counts_the_silent_locations_of_the_partitions_asked() -> None:
    c = clocks()
    c.heard(0, "S-0", NOW - 120_000, NOW - 120_000)  # quiet 2 min > 60 s
    c.heard(0, "S-2", NOW - 1_000, NOW - 1_000)
    c.heard(1, "S-1", NOW - 120_000, NOW - 120_000)
    assert c.silent(NOW, [0, 1]) == 2
    assert c.silent(NOW, [0]) == 1
    c.forget([1])
    assert c.silent(NOW, [0, 1]) == 1
    assert set(written(c)) == {"S-0", "S-2"}, "a revoked partition's unwritten changes are its next owner's"


async def test_a_loaded_partition_keeps_what_the_cache_holds_for_its_locations() -> None:
    class Cache:
        async def hgetall(self, key: str) -> dict[bytes, bytes]:
            assert key == topics.LOCATIONS_KEY
            return {b"S-0": b"[10, 20]", b"S-1": b"[30, 40]", b"S-2": b"garbage"}

    c = clocks()
    c.heard(0, "S-0", 15, 5)
    await c.load(Cache(), 0)  # type: ignore[arg-type]
    assert c.heard_by == {0: {"S-0": (15, 20)}}  # S-1 is partition 1's; S-2 unreadable: heard again


async def test_the_partitions_of_one_assignment_share_one_read() -> None:
    reads = []

    class Cache:
        async def hgetall(self, key: str) -> dict[bytes, bytes]:
            reads.append(key)
            return {b"S-0": b"[10, 20]", b"S-1": b"[30, 40]"}

    now = [100.0]
    c = LocationClocks(lambda location: int(location[-1]) % 2, silent_after_s=60, calendar=Calendar(),
                       monotonic=lambda: now[0])
    await c.load(Cache(), 0)  # type: ignore[arg-type]
    await c.load(Cache(), 1)  # type: ignore[arg-type]
    assert (len(reads), c.heard_by) == (1, {0: {"S-0": (10, 20)}, 1: {"S-1": (30, 40)}})
    now[0] += 60  # a later assignment reads again
    await c.load(Cache(), 1)  # type: ignore[arg-type]
    assert len(reads) == 2


async def test_a_cache_that_does_not_answer_leaves_the_times_to_be_heard_again() -> None:
    class Down:
        async def hgetall(self, key: str) -> dict[bytes, bytes]:
            raise ConnectionError("refused")

    c = clocks()
    await c.load(Down(), 0)  # type: ignore[arg-type]
    assert c.heard_by.get(0, {}) == {}


def test_arrival_is_the_records_timestamp_never_after_now() -> None:
    record = ConsumerRecord("t", 0, 1, 1_764_842_399_250, 0, b"k", b"v", None, 1, 1, [])  # Kafka's: ms
    assert _arrival_ms(record, NOW) == NOW - 750
    assert _arrival_ms(SimpleNamespace(timestamp=None), NOW) == NOW
    assert _arrival_ms(SimpleNamespace(timestamp=-1), NOW) == NOW
    assert _arrival_ms(SimpleNamespace(timestamp=1_764_842_460_000), NOW) == NOW  # a producer clock ahead
