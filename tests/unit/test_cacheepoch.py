"""The cache-epoch protocol between the worker's tick and its agent (streams/cacheepoch.py), on fakes."""

from __future__ import annotations

from typing import Any

from availability import topics
from streams.cacheepoch import CacheEpochs


class State:
    def __init__(self) -> None:
        self.resnapshots = 0

    def resnapshot(self) -> None:
        self.resnapshots += 1


class Cache:
    def __init__(self, fields: dict[str, str] | None = None, *, down: bool = False) -> None:
        self.fields, self.down = fields or {}, down

    async def hmget(self, key: str, names: list[str]) -> list[Any]:
        if self.down:
            raise ConnectionError("refused")
        assert key == topics.CACHE_EPOCHS_KEY
        return [self.fields.get(name) for name in names]


class Pipe:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.calls.append((key, mapping))


async def test_a_partition_is_written_whole_until_confirmed_and_again_when_its_field_is_lost() -> None:
    epochs, states = CacheEpochs("w"), {0: State(), 1: State()}
    assert epochs.renew(states) == [0, 1]  # taken over: written whole once
    pipe = Pipe()
    epochs.mark(pipe, [0, 1])
    assert [(key, sorted(fields)) for key, fields in pipe.calls] == [(topics.CACHE_EPOCHS_KEY, ["0", "1"])]
    epochs.written([0, 1])
    assert epochs.renew(states) == []
    await epochs.check(Cache({"0": "w@1"}), [0, 1])  # partition 1's field is gone (a flush, a restart)
    assert epochs.renew(states) == [1]
    assert (states[0].resnapshots, states[1].resnapshots) == (1, 2)


async def test_no_whole_snapshots_while_the_cache_is_down_then_every_partition_once_it_answers() -> None:
    epochs, states = CacheEpochs("w"), {0: State(), 1: State()}
    epochs.written(epochs.renew(states))
    epochs.failed(states)  # a cache write failed
    assert epochs.renew(states) == []
    await epochs.check(Cache(down=True), [0, 1])
    assert epochs.renew(states) == []
    await epochs.check(Cache(), [0, 1])
    assert epochs.renew(states) == [0, 1]
