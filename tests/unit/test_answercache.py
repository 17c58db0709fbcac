"""The API's kept answers (:mod:`api.answercache`): when they may be served, what drops them, and that a
read racing a change never keeps what it read."""

from __future__ import annotations

import pytest

from api.answercache import EPOCHS_MAX_AGE_S, HEARD_MAX_AGE_S, MAX_AGE_S, REFRESH_AGE_S, AnswerCache
from availability import wire

POSITIONS = [("S-1", (5, 1, 0, 0, 0, 1_764_000_000_000))]
ALL_EPOCHS = {b"0": b"w0@1", b"1": b"w0@1"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def answers(clock: Clock) -> AnswerCache:
    answers = AnswerCache(3, 2, clock=clock)
    answers.subscription_confirmed()
    answers.epochs_read(dict(ALL_EPOCHS))
    return answers


def test_served_only_while_subscribed_and_every_epoch_was_read_lately(clock: Clock) -> None:
    answers = AnswerCache(3, 2, clock=clock)
    assert not answers.usable()
    answers.epochs_read(dict(ALL_EPOCHS))
    assert not answers.usable(), "not subscribed yet"
    answers.subscription_confirmed()
    assert answers.usable()
    clock.now += EPOCHS_MAX_AGE_S + 0.01
    answers.heard()
    assert not answers.usable(), "the epochs were not read lately"
    answers.epochs_read(dict(ALL_EPOCHS))
    assert answers.usable()
    clock.now += HEARD_MAX_AGE_S + 0.01
    answers.epochs_read(dict(ALL_EPOCHS))
    assert not answers.usable(), "the subscription went silent: no message, no pong"
    answers.heard()
    assert answers.usable()
    answers.epochs_read({b"0": b"w0@1"})
    assert not answers.usable(), "partition 1's epoch is missing: the cache lost data"
    answers.epochs_read(dict(ALL_EPOCHS))
    answers.epochs_unreadable()
    assert not answers.usable()


def test_a_read_that_raced_a_change_is_answered_but_not_kept(answers: AnswerCache) -> None:
    generation = answers.generation
    answers.changed(["SKU-2"])  # arrives while the read is on its way (any SKU: the generation moves)
    answers.keep(generation, "SKU-1", POSITIONS)
    assert answers.get("SKU-1") is None
    answers.keep(answers.generation, "SKU-1", POSITIONS)
    assert answers.get("SKU-1") is not None


@pytest.mark.parametrize("drop", ["changed", "every SKU changed", "clear", "subscription lost", "epoch changed",
                                  "epoch missing", "epochs unreadable"])
def test_what_drops_kept_answers_and_fences_reads_in_flight(answers: AnswerCache, drop: str) -> None:
    answers.keep(answers.generation, "SKU-1", POSITIONS)
    generation = answers.generation
    {"changed": lambda: answers.changed(["SKU-1"]),
     "every SKU changed": lambda: answers.changed(wire.changed_skus(wire.changed_message(
         [f"SKU-{i}" for i in range(wire.CHANGED_MAX_SKUS + 1)]))),
     "clear": answers.clear,
     "subscription lost": answers.subscription_lost,
     "epoch changed": lambda: answers.epochs_read({b"0": b"w1@2", b"1": b"w0@1"}),
     "epoch missing": lambda: answers.epochs_read({b"1": b"w0@1"}),
     "epochs unreadable": answers.epochs_unreadable}[drop]()
    assert answers.kept == {}
    assert answers.generation != generation


def test_unchanged_epochs_and_other_skus_changes_keep_what_is_kept(answers: AnswerCache) -> None:
    answers.keep(answers.generation, "SKU-1", POSITIONS)
    answers.epochs_read(dict(ALL_EPOCHS))
    answers.changed(["SKU-2", "SKU-3"])
    assert answers.get("SKU-1") is not None


def test_nothing_is_kept_while_not_served(answers: AnswerCache) -> None:
    answers.subscription_lost()
    answers.keep(answers.generation, "SKU-1", POSITIONS)
    assert answers.kept == {}
    answers.subscription_confirmed()
    assert answers.kept == {}


def test_least_recently_read_goes_first_and_nothing_outlives_its_age(answers: AnswerCache, clock: Clock) -> None:
    for sku in ("A", "B", "C"):
        answers.keep(answers.generation, sku, POSITIONS)
    assert answers.get("A") is not None  # B is now the least recently read
    answers.keep(answers.generation, "D", POSITIONS)
    assert list(answers.kept) == ["C", "A", "D"]
    clock.now += MAX_AGE_S + 0.01
    assert answers.get("A") is None


def test_an_answer_served_past_half_its_age_is_due_to_be_read_again(answers: AnswerCache, clock: Clock) -> None:
    for sku in ("A", "B", "C"):
        answers.keep(answers.generation, sku, POSITIONS)
    assert answers.get("A") is not None
    assert answers.take_due() == [], "young"
    clock.now += REFRESH_AGE_S + 0.01
    assert [entry is not None for entry in answers.get_many(["A", "C"])] == [True, True], "still served"
    answers.changed(["C"])
    assert answers.take_due() == ["A"], "served and still kept; B was not asked for, C was dropped"
    assert answers.take_due() == []


def test_a_read_that_finds_what_is_kept_renews_it_and_its_rendered_answers(answers: AnswerCache,
                                                                          clock: Clock) -> None:
    entry = answers.keep(answers.generation, "A", POSITIONS)
    entry.rendered[(None, None)] = (b"head", b"tail")
    clock.now += MAX_AGE_S - 1
    answers.epochs_read(dict(ALL_EPOCHS))
    answers.heard()  # served all along
    assert answers.keep(answers.generation, "A", list(POSITIONS)) is entry
    clock.now += 2
    assert answers.get("A") is entry, "renewed: its age counts from the second read"
    assert entry.rendered == {(None, None): (b"head", b"tail")}
    answers.epochs_read(dict(ALL_EPOCHS))
    answers.heard()
    changed = answers.keep(answers.generation, "A", [("S-1", (4, 1, 0, 0, 0, 1_764_000_000_001))])
    assert changed is not entry
    assert changed.rendered == {}
    assert answers.get("A") is changed


def test_a_kept_sku_answers_any_scope_in_the_asked_order(answers: AnswerCache) -> None:
    positions = [("S-1", (1, 0, 0, 0, 0, 1)), ("S-2", (2, 0, 0, 0, 0, 1)), ("S-3", (3, 0, 0, 0, 0, 1))]
    kept = answers.keep(answers.generation, "SKU-1", positions)
    assert kept.in_scope(None) == positions
    assert kept.in_scope(["S-3", "nowhere", "S-1"]) == [positions[2], positions[0]]


def test_change_messages_name_the_skus_or_every_sku() -> None:
    assert wire.changed_skus(wire.changed_message(["SKU-1", "a:b.c-d_e"])) == ["SKU-1", "a:b.c-d_e"]
    many = [f"SKU-{i}" for i in range(wire.CHANGED_MAX_SKUS)]
    assert wire.changed_skus(wire.changed_message(many)) == many
    assert wire.changed_skus(wire.changed_message([*many, "one more"])) is None
