"""Dead letters stay producible whatever the poison: a payload is cut where its record could outgrow the
producer's request limit, and the detail says where the whole message is."""

from __future__ import annotations

import orjson

from availability import wire


def test_a_dead_letter_keeps_an_ordinary_payload_whole() -> None:
    payload = '{"event_id": "e-1", "lines": []}'
    record = wire.dead_letter("invalid_field", "lines: too short", "inventory.sales", 3, 41, payload)
    assert record == {"reason": "invalid_field", "detail": "lines: too short", "topic": "inventory.sales",
                      "partition": 3, "offset": 41, "payload": payload}


def test_a_huge_payload_is_cut_so_the_record_stays_under_the_producer_limit() -> None:
    worst = "\x00" * 1_100_000  # each NUL becomes six bytes of JSON
    record = wire.dead_letter("message_too_large", "1100000 bytes", "inventory.sales", 0, 7, worst)
    assert len(orjson.dumps(record)) < 1_000_000
    assert record["payload"] == worst[: wire.DEAD_LETTER_PAYLOAD_CHARS]
    assert "inventory.sales[0]@7" in record["detail"]
    assert record["detail"].startswith("1100000 bytes")
