"""Remembered event ids by 64-bit hash (``availability.dedupe``) answer as the dict of strings they replaced.

``StringIds`` below is the previous ``RecentIds`` (a dict id → generation and a list per generation), kept as
the reference: for any sequence of ids, seals, restores and expiries the hashed structure answers the same
(hash collisions aside: none among the few hundred ids drawn here). Restored generations are given to the
reference in order of first-seen time, as it needs (it forgets an id held by two generations with the one
restored last); the hashed structure gets them in any order, and :class:`Model` states the rule it follows
then: an id is remembered while any generation holding it is within the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from availability.dedupe import RecentIds, id_hash
from availability.wire import ids_from_wire, ids_record_json

WINDOW = 1_000
KEYS = [f"e-{n}" for n in range(12)] + [f"t-{n}#destination" for n in range(4)]


class StringIds:
    """The previous RecentIds, verbatim but for its name."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._generation_of: dict[str, int] = {}
        self._generations: dict[int, tuple[int, list[str]]] = {}
        self._pending: dict[str, None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._generation_of or key in self._pending

    def __len__(self) -> int:
        return len(self._generation_of) + len(self._pending)

    def add(self, key: str) -> None:
        self._pending[key] = None

    def restore(self, generation: int, first_ms: int, ids: Iterable[str]) -> None:
        ids = list(ids)
        self._generations[generation] = (first_ms, ids)
        for key in ids:
            self._generation_of[key] = generation

    def seal(self, generation: int, now_ms: int) -> list[str] | None:
        if not self._pending:
            return None
        ids = list(self._pending)
        self._pending = {}
        self.restore(generation, now_ms, ids)
        return ids

    def expire(self, now_ms: int) -> list[int]:
        cutoff = now_ms - self.window_ms
        dropped = [gen for gen, (first_ms, _) in self._generations.items() if first_ms < cutoff]
        for generation in dropped:
            _, ids = self._generations.pop(generation)
            for key in ids:
                if self._generation_of.get(key) == generation:
                    del self._generation_of[key]
        return dropped


class Model:
    """The rule, stated plainly: pending ids, and generations (first-seen time, ids) until they expire."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.pending: set[str] = set()
        self.generations: dict[int, tuple[int, set[str]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.pending or any(key in ids for _, ids in self.generations.values())

    def expire(self, now_ms: int) -> list[int]:
        dropped = [g for g, (first_ms, _) in self.generations.items() if first_ms < now_ms - self.window_ms]
        for generation in dropped:
            del self.generations[generation]
        return dropped


generations = st.lists(st.tuples(st.integers(0, 5_000), st.lists(st.sampled_from(KEYS), unique=True, max_size=6)),
                       max_size=8)
# (operation, argument): add a key, check it, seal pending ids, or expire, the clock moved by the argument
operations = st.lists(st.one_of(st.tuples(st.sampled_from(["add", "check"]), st.sampled_from(KEYS)),
                                st.tuples(st.sampled_from(["seal", "expire"]), st.integers(-300, 1_500))),
                      max_size=60)


def same_answers(new: RecentIds, old: StringIds | Model) -> None:
    assert [key in new for key in KEYS] == [key in old for key in KEYS]


@settings(max_examples=300, deadline=None)
@given(stored=generations, ops=operations, disjoint=st.booleans())
def test_answers_as_the_dict_of_strings(stored: list[tuple[int, list[str]]], ops: list[tuple[str, Any]],
                                        disjoint: bool) -> None:
    """Any sequence, the clock going back now and then; ``add`` only of ids not remembered, as the shard does."""
    new, old = RecentIds(WINDOW), StringIds(WINDOW)
    taken: set[str] = set()
    restored = []
    for generation, (first_ms, ids) in enumerate(stored, start=1):
        kept = [key for key in ids if key not in taken] if disjoint else ids
        taken.update(kept)
        restored.append((first_ms, generation, kept))
    for first_ms, generation, ids in sorted(restored):
        old.restore(generation, first_ms, ids)
    for first_ms, generation, ids in reversed(restored):  # in any order: the records load as they come
        new.restore(generation, first_ms, map(id_hash, ids))
    same_answers(new, old)
    now, generation = 2_000, len(stored)
    for operation, argument in ops:
        if operation == "add":
            if argument not in old:
                old.add(argument)
                new.add(id_hash(argument))
        elif operation == "check":
            assert (argument in new) == (argument in old)
        elif operation == "seal":
            now += argument
            generation += 1
            sealed = old.seal(generation, now)
            hashes = new.seal(generation, now)
            assert (list(hashes) if hashes is not None else None) == (
                [id_hash(key) for key in sealed] if sealed is not None else None)
        else:
            now += argument
            assert sorted(new.expire(now)) == sorted(old.expire(now))
        same_answers(new, old)
        if disjoint:
            assert len(new) == len(old)
        assert new.pending == bool(old._pending)


@settings(max_examples=200, deadline=None)
@given(stored=generations, order=st.randoms(use_true_random=False), ops=operations)
def test_an_id_is_remembered_while_any_generation_holding_it_is_live(
        stored: list[tuple[int, list[str]]], order: Any, ops: list[tuple[str, Any]]) -> None:
    """Restored in any order, an id in two generations, re-added after it was sealed: the plain rule holds."""
    new, model = RecentIds(WINDOW), Model(WINDOW)
    restored = [(generation, first_ms, ids) for generation, (first_ms, ids) in enumerate(stored, start=1)]
    order.shuffle(restored)
    for generation, first_ms, ids in restored:
        new.restore(generation, first_ms, map(id_hash, ids))
        model.generations[generation] = (first_ms, set(ids))
    now, generation = 2_000, len(stored)
    for operation, argument in ops:
        if operation == "add":
            new.add(id_hash(argument))
            model.pending.add(argument)
        elif operation == "seal":
            now += argument
            generation += 1
            if new.seal(generation, now) is not None:
                model.generations[generation] = (now, model.pending)
                model.pending = set()
        elif operation == "expire":
            now += argument
            assert sorted(new.expire(now)) == sorted(model.expire(now))
        same_answers(new, model)


def test_generations_expire_with_the_window_and_the_log_is_cut() -> None:
    ids = RecentIds(WINDOW)
    for generation in range(1, 3_001):  # a flush a millisecond, two ids each
        ids.add(id_hash(f"a-{generation}"))
        ids.add(id_hash(f"b-{generation}"))
        ids.seal(generation, generation)
        ids.expire(generation)
    assert len(ids) == 2 * 1_001  # generations 2,000 to 3,000: first seen within 1,000 ms of 3,000
    assert ["a-1999" in ids, "a-2000" in ids, "b-3000" in ids] == [False, True, True]
    assert len(ids._firsts) < 3_000  # expired generations were cut off the front
    assert ids.expire(10_000) == list(range(2_000, 3_001))
    assert len(ids) == 0
    assert "b-3000" not in ids


def test_a_thousand_ids_restored_then_one_sealed() -> None:
    ids = RecentIds(WINDOW)
    ids.restore(7, 100, map(id_hash, (f"r-{n}" for n in range(1_000))))
    ids.add(id_hash("late"))
    assert ids.seal(8, 150) is not None
    assert ids.seal(9, 150) is None  # nothing pending
    assert all(f"r-{n}" in ids for n in range(1_000))
    assert ["late" in ids, "r-1000" in ids] == [True, False]
    assert ids.expire(1_101) == [7]
    assert ["late" in ids, "r-0" in ids] == [True, False]


def test_ids_record_round_trip_and_previous_version() -> None:
    hashes = RecentIds(WINDOW)
    for key in KEYS:
        hashes.add(id_hash(key))
    sealed = hashes.seal(1, 5)
    assert sealed is not None
    record = orjson.loads(ids_record_json(5, sealed))
    assert set(record) == {"t", "h"}
    assert len(record["h"]) == 4 * -(-8 * len(KEYS) // 3)  # base64 of 8 bytes an id
    assert ids_from_wire(record) == (5, sealed)
    assert ids_from_wire({"t": 5, "ids": KEYS}) == (5, sealed)  # written before the hashes: hashed on load


def test_id_hash_is_fixed() -> None:
    """Stored records hold these hashes: the function must never change. Expected values from coreutils
    (``printf 'e-1' | b2sum -l 64``: BLAKE2b, 8 bytes), read little-endian."""
    assert id_hash("e-1") == int.from_bytes(bytes.fromhex("317386494bf10d9f"), "little")
    assert id_hash("t-3#destination") == int.from_bytes(bytes.fromhex("7ef445ff1736d4f8"), "little")
