"""``ats erp reconcile``: the engine's on_hand, read from the availability cache the workers write, against
an ERP book (:mod:`availability.drift` does the arithmetic)."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

import cacheclient
from availability import topics
from availability.drift import BookLine, Drift, drift
from availability.settings import Settings


def engine_on_hand(cache: cacheclient.SyncCache, skus: Iterable[str]) -> dict[tuple[str, str], int]:
    """on_hand of every cached position of these SKUs (one hash per SKU, pipelined)."""
    ordered = sorted(set(skus))
    pipe = cache.pipeline(transaction=False)
    for sku in ordered:
        pipe.hgetall(topics.position_key(sku))
    out: dict[tuple[str, str], int] = {}
    for sku, fields in zip(ordered, pipe.execute(), strict=True):
        for location, raw in fields.items():
            out[(sku, location.decode())] = int(orjson.loads(raw)[0])
    return out


def reconcile(settings: Settings, book: list[BookLine]) -> list[Drift]:
    cache = cacheclient.connect_sync(settings, socket_timeout=10.0)
    try:
        return drift(book, engine_on_hand(cache, (line.sku for line in book)))
    finally:
        cache.close()


def render(rows: list[Drift], *, only_drift: bool) -> list[str]:
    shown = [row for row in rows if row.drift or not only_drift]
    width_sku = max([len("sku"), *(len(row.sku) for row in shown)])
    width_loc = max([len("location_id"), *(len(row.location_id) for row in shown)])
    lines = [f"{'sku':<{width_sku}}  {'location_id':<{width_loc}}  {'erp':>10}  {'engine':>10}  {'drift':>10}"]
    lines += [f"{row.sku:<{width_sku}}  {row.location_id:<{width_loc}}  {row.erp_on_hand:>10}  "
              f"{row.engine_on_hand:>10}  {row.drift:>+10}" for row in shown]
    drifting = [row for row in rows if row.drift]
    lines.append(f"{len(rows)} positions, {len(drifting)} drifting, total |drift| "
                 f"{sum(abs(row.drift) for row in drifting)}")
    return lines
