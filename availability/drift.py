"""ERP reconciliation: the ERP's book on-hand per (SKU, location) against the engine's on_hand.

``drift = engine on_hand - ERP book on_hand``: positive when the engine holds more than the ERP has
booked (postings not yet booked, or lost on the ERP side), negative the other way round. With every
posting booked, conservation makes every drift 0.

A book is CSV with a header naming ``sku``, ``location_id`` (or ``location``) and ``on_hand`` (or
``qty``), or JSON: a list of ``{"sku", "location_id", "on_hand"}`` objects, or ``{"positions": [...]}``.
Parsing takes text, never a path: the caller reads the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

_SKU = ("sku",)
_LOCATION = ("location_id", "location")
_ON_HAND = ("on_hand", "qty", "quantity")


class BookError(ValueError):
    """The book cannot be read; the message names the line or item."""


class BookLine(NamedTuple):
    sku: str
    location_id: str
    on_hand: int


class Drift(NamedTuple):
    sku: str
    location_id: str
    erp_on_hand: int
    engine_on_hand: int
    drift: int


def parse_book(text: str, *, name: str = "") -> list[BookLine]:
    """The positions of a book; JSON when ``name`` ends in ``.json`` or the text starts with ``[`` / ``{``."""
    stripped = text.lstrip()
    if name.lower().endswith(".json") or stripped.startswith(("[", "{")):
        return _json_book(stripped)
    return _csv_book(text)


def _json_book(text: str) -> list[BookLine]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BookError(f"not JSON: {exc}") from None
    items = data.get("positions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BookError('JSON book must be a list of positions or {"positions": [...]}')
    return one_per_position(_line(item, f"item {index}") for index, item in enumerate(items))


def _csv_book(text: str) -> list[BookLine]:
    reader = csv.DictReader(io.StringIO(text))
    header = {(field or "").strip().lower() for field in reader.fieldnames or ()}
    for names in (_SKU, _LOCATION, _ON_HAND):
        if not header & set(names):
            raise BookError(f"CSV header must name {' or '.join(names)}; it has {sorted(header)}")
    rows = ({(k or "").strip().lower(): v for k, v in row.items()} for row in reader)
    return one_per_position(_line(row, f"line {index}") for index, row in enumerate(rows, start=2))


def _pick(item: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((item[name] for name in names if item.get(name) not in (None, "")), None)


def _line(item: Any, where: str) -> BookLine:
    if not isinstance(item, Mapping):
        raise BookError(f"{where}: not an object")
    sku, location, on_hand = _pick(item, _SKU), _pick(item, _LOCATION), _pick(item, _ON_HAND)
    if not isinstance(sku, str) or not sku.strip() or not isinstance(location, str) or not location.strip():
        raise BookError(f"{where}: sku and location_id are required")
    if isinstance(on_hand, bool) or not isinstance(on_hand, int | str):
        raise BookError(f"{where}: on_hand must be an integer, not {on_hand!r}")
    try:
        qty = int(on_hand)
    except ValueError:
        raise BookError(f"{where}: on_hand must be an integer, not {on_hand!r}") from None
    return BookLine(sku.strip(), location.strip(), qty)


def one_per_position(lines: Iterable[BookLine]) -> list[BookLine]:
    """One line per position: a position listed twice is refused (an ERP book states each once)."""
    seen: dict[tuple[str, str], BookLine] = {}
    for line in lines:
        key = (line.sku, line.location_id)
        if key in seen:
            raise BookError(f"{line.sku} at {line.location_id} is listed twice")
        seen[key] = line
    return list(seen.values())


def drift(book: Iterable[BookLine], engine: Mapping[tuple[str, str], int]) -> list[Drift]:
    """Every position of the book, and every engine position of the book's SKUs, with its drift.

    ``engine`` maps ``(sku, location_id)`` to on_hand; a position missing on either side counts as 0.
    Sorted by SKU, then location.
    """
    booked = {(line.sku, line.location_id): line.on_hand for line in book}
    skus = {sku for sku, _ in booked}
    keys = set(booked) | {key for key in engine if key[0] in skus}
    return [Drift(sku, location, booked.get((sku, location), 0), engine.get((sku, location), 0),
                  engine.get((sku, location), 0) - booked.get((sku, location), 0))
            for sku, location in sorted(keys)]
