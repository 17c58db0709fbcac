"""Reading an ERP book and the drift against the engine, worked by hand."""

from __future__ import annotations

import pytest

from availability.drift import BookError, BookLine, Drift, drift, parse_book


def test_csv_book_with_either_column_names() -> None:
    text = "sku,location_id,on_hand\nA,S1,10\nB,S1,-2\n"
    assert parse_book(text, name="book.csv") == [BookLine("A", "S1", 10), BookLine("B", "S1", -2)]
    assert parse_book("SKU, Location ,qty\nA,S1,3\n") == [BookLine("A", "S1", 3)]


def test_json_book_as_a_list_or_positions() -> None:
    items = '[{"sku": "A", "location_id": "S1", "on_hand": 4}]'
    assert parse_book(items, name="book.json") == [BookLine("A", "S1", 4)]
    assert parse_book('{"positions": [{"sku": "A", "location": "S2", "qty": "5"}]}') == [BookLine("A", "S2", 5)]


@pytest.mark.parametrize(("text", "message"), [
    ("sku,on_hand\nA,1\n", "location_id or location"),
    ("sku,location_id,on_hand\nA,S1,ten\n", "line 2: on_hand must be an integer"),
    ("sku,location_id,on_hand\nA,S1,1\nA,S1,2\n", "listed twice"),
    ('[{"sku": "A", "location_id": "S1", "on_hand": 1.5}]', "item 0: on_hand must be an integer"),
    ('[{"sku": "", "location_id": "S1", "on_hand": 1}]', "sku and location_id are required"),
    ('{"rows": []}', "must be a list"),
    ("[1,", "not JSON"),
])
def test_a_bad_book_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(BookError, match=message):
        parse_book(text)


def test_drift_is_engine_minus_book_over_both_sides_of_the_books_skus() -> None:
    book = [BookLine("A", "S1", 10), BookLine("A", "S2", 5), BookLine("B", "S1", 0)]
    engine = {("A", "S1"): 10, ("A", "S3"): 4, ("B", "S1"): -1, ("C", "S1"): 9}  # C is not in the book
    assert drift(book, engine) == [Drift("A", "S1", 10, 10, 0), Drift("A", "S2", 5, 0, -5),
                                   Drift("A", "S3", 0, 4, 4), Drift("B", "S1", 0, -1, -1)]
