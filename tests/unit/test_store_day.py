"""The README's worked example, a store's day in ten events, with the ATS after each worked by hand."""

from __future__ import annotations

from typing import Any

import orjson

from availability.routing import legs
from availability.shard import PartitionState, Source
from availability.validation import validate_event

STORE, OTHER, SKU = "STORE-12", "STORE-14", "TSHIRT-M"
NOW = 1_795_521_600_000  # 2026-11-24T12:00:00Z, the worker's clock


def at(hhmm: str) -> str:
    return f"2026-11-24T{hhmm}:00Z"


DAY: list[tuple[dict[str, Any], tuple[int, int, int, int, int, int]]] = [
    # event, then (on_hand, reserved, in_transit, damaged, safety_stock, ATS) at STORE-12 after it
    ({"type": "receipt", "occurred_at": at("07:00"), "location_id": STORE, "lines": [{"sku": SKU, "qty": 20}]},
     (20, 0, 0, 0, 0, 20)),
    ({"type": "policy", "occurred_at": at("07:05"), "location_id": STORE,
      "lines": [{"sku": SKU, "safety_stock": 2}]}, (20, 0, 0, 0, 2, 18)),
    ({"type": "sale", "occurred_at": at("09:10"), "location_id": STORE, "lines": [{"sku": SKU, "qty": 3}]},
     (17, 0, 0, 0, 2, 15)),
    ({"type": "reservation", "occurred_at": at("09:30"), "location_id": STORE, "reservation_id": "R-1",
      "action": "hold", "channel": "ecom", "lines": [{"sku": SKU, "qty": 5}]}, (17, 5, 0, 0, 2, 10)),
    ({"type": "return", "occurred_at": at("10:00"), "location_id": STORE,
      "lines": [{"sku": SKU, "qty": 1, "disposition": "damaged"}]}, (17, 5, 0, 1, 2, 10)),
    ({"type": "sale", "occurred_at": at("10:15"), "location_id": STORE, "reservation_id": "R-1",
      "lines": [{"sku": SKU, "qty": 5}]}, (12, 0, 0, 1, 2, 10)),
    ({"type": "transfer", "occurred_at": at("11:00"), "transfer_id": "T-9", "status": "shipped",
      "from_location_id": STORE, "to_location_id": OTHER, "lines": [{"sku": SKU, "qty": 4}]},
     (8, 0, 0, 1, 2, 6)),
    ({"type": "adjustment", "occurred_at": at("12:00"), "location_id": STORE, "mode": "count",
      "lines": [{"sku": SKU, "qty": 7}]}, (7, 0, 0, 1, 2, 5)),
    ({"type": "sale", "occurred_at": at("11:45"), "location_id": STORE, "source": "pos:store-12:till-2 (offline)",
      "lines": [{"sku": SKU, "qty": 2}]}, (7, 0, 0, 1, 2, 5)),
    ({"type": "return", "occurred_at": at("13:00"), "location_id": STORE, "lines": [{"sku": SKU, "qty": 1}]},
     (8, 0, 0, 1, 2, 6)),
]


def test_a_store_day() -> None:
    state = PartitionState(0, horizon_ms=86_400_000, dedupe_window_ms=7 * 86_400_000)
    for offset, (fields, expected) in enumerate(DAY):
        event = validate_event(orjson.dumps({"event_id": f"day-{offset}", **fields}))
        for leg in legs(event):
            assert state.apply(event, leg, Source(0, offset), NOW) is None
        position = state.position(STORE, SKU)
        got = (position.on_hand, position.reserved, position.in_transit, position.damaged,
               position.safety_stock, position.ats)
        assert got == expected, f"after event {offset + 1} ({fields['type']})"
    assert state.position(OTHER, SKU).in_transit == 4

