"""Chaos on the input side: poison on every topic, and a store that was offline for two hours.

* Poison: the bad kinds the engine dead-letters (``test_engine._bad_inputs``), records the internal topic
  ``ats.routed`` cannot hold, plus generic ones on every input topic: not JSON, not an object, empty,
  the wrong type for the topic, deeply nested JSON, a message near the 1 MiB limit and one over it.
  Each is dead-lettered with its reason and provenance (or, over the broker's own limit, refused to the
  producer), nothing changes, and the next good event on every topic applies.
* Offline store: two hours of one store's sales and returns arrive late, in one burst, after counts
  were taken: final on_hand follows the count rules of the contract (a movement at or before the
  latest count no longer moves on_hand; an older count changes nothing), worked out here by hand, and
  the ERP postings add up to it.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from availability import topics
from tests.builders import count, delta, hold, policy, receipt, ref, return_, sale, transfer

from .chaos import erp_agrees, report
from .cluster import Cluster
from .test_engine import _bad_inputs, settle

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(240)]

DEPTH = 100_000
NEAR_LIMIT = 1_000_000  # bytes: under the engine's 1 MiB and every broker's default limit
OVER_LIMIT = 1_100_000  # over the engine's MAX_MESSAGE_BYTES (1 MiB) and Kafka's message.max.bytes


def generic_poison(topic: str, store: str, sku: str) -> list[tuple[str, bytes]]:
    """(expected reason, payload) for one input topic."""
    wrong_type = receipt(store, (sku, 1)) if topic != topics.RECEIPTS else sale(store, (sku, 1))
    nested_event = {**sale(store, (sku, 1)), "source": "x"}
    nested_event_raw = _json(nested_event).replace(b'"x"', b"[" * DEPTH + b"]" * DEPTH)
    return [
        ("invalid_json", b"\x00\x01 not json"),
        ("not_an_object", b'"a string"'),
        ("empty_message", b""),
        ("type_topic_mismatch", _json(wrong_type)),
        ("invalid_json", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH),  # nested past any parser's depth
        ("invalid_json", nested_event_raw),
        ("invalid_json", b'"' + b"\\u00e9" * (NEAR_LIMIT // 6) + b'"' + b" {"),  # ~1 MB, escapes grow on output
    ]


def _json(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


async def test_poison_on_every_topic_is_dead_lettered_and_processing_continues(engine: Cluster) -> None:
    store, other, sku = ref("S"), ref("S"), ref("SKU")
    await engine.send(topics.RECEIPTS, receipt(store, (sku, 10)))
    await settle(engine, sku, store, [10, 0, 0, 0, 0])

    expected: dict[tuple[str, int, int], str] = {}
    for reason, topic, payload in _bad_inputs(store, sku):
        expected[await engine.send(topic, payload, key=store)] = reason
    for topic in topics.INPUT_TOPICS:
        for reason, payload in generic_poison(topic, store, sku):
            expected[await engine.send(topic, payload, key=store)] = reason
    # The internal topic too (only workers write there; a bad record must not crash the one that reads it).
    for payload in (b"not json", b"[1]", b'{"kind": "leg"}', b'{"kind": "tick", "now_ms": "soon"}',
                    b'{"kind": "leg", "leg": "all", "location_id": "S", "topic": "inventory.nowhere", '
                    b'"partition": 0, "offset": 0, "payload": "{}"}'):
        expected[await engine.send(topics.ROUTED, payload, key=store)] = "invalid_routed_record"
    refused = await produce_oversized(engine, store)
    for where, reason in refused.items():
        expected[where] = reason

    good = [(topics.SALES, sale(store, (sku, 1))), (topics.RETURNS, return_(store, (sku, 2))),
            (topics.TRANSFERS, transfer(store, other, "shipped", (sku, 1))),
            (topics.RECEIPTS, receipt(store, (sku, 10))), (topics.RESERVATIONS, hold(store, ref("R"), (sku, 1))),
            (topics.ADJUSTMENTS, delta(store, (sku, 3))), (topics.POLICIES, policy(store, (sku, 1)))]
    for topic, event in good:
        await engine.send(topic, event)
    # 10 - 1 sale + 2 return - 1 shipped + 10 receipt + 3 delta; 1 held; safety stock 1
    await settle(engine, sku, store, [23, 1, 0, 0, 1])
    await settle(engine, sku, other, [0, 0, 1, 0, 0])

    def provenance(record: dict[str, Any]) -> tuple[str, int, int]:
        return record["topic"], record["partition"], record["offset"]

    letters = await engine.dead_letters(lambda r: provenance(r) in expected, expect=len(expected), timeout=60)
    assert {provenance(letter): letter["reason"] for letter in letters} == expected
    for letter in letters:
        assert letter["detail"]
    report("poison on every input topic", dead_lettered=len(letters), by_reason=dict(Counter(expected.values())),
           oversized=("dead-lettered" if refused else "refused by the broker"),
           good_event_after_on_every_topic="applied")


async def produce_oversized(engine: Cluster, store: str) -> dict[tuple[str, int, int], str]:
    """A message over the 1 MiB limit, produced with a client that allows it. Apache Kafka refuses it
    (``message.max.bytes``): the producer gets the error and nothing reaches the engine. A broker that
    takes it must see it dead-lettered as ``message_too_large``. Returns where it landed, if it did."""
    producer = AIOKafkaProducer(bootstrap_servers=engine.settings.bootstrap_servers, acks="all",
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        landed = await producer.send_and_wait(topics.SALES, b"{" + b" " * OVER_LIMIT + b"}", key=store.encode())
    except KafkaError:
        return {}
    finally:
        await producer.stop()
    return {(landed.topic, landed.partition, landed.offset): "message_too_large"}


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_an_offline_store_bursts_two_hours_late_after_counts(engine: Cluster) -> None:
    """08:00 receipts arrive on time; counts as of 11:00 (and 11:30 for one SKU) are taken; then the store's
    10:00-12:00 sales and returns arrive in one burst, then an older count (10:30) that must change nothing."""
    rng = random.Random(77)
    store, skus = ref("S"), [ref("SKU") for _ in range(5)]
    day = datetime(2026, 11, 24, tzinfo=UTC)
    opening = day + timedelta(hours=8)
    counted = {sku: day + timedelta(hours=11) for sku in skus}
    counted[skus[0]] = day + timedelta(hours=11, minutes=30)
    counts = {sku: rng.randint(20, 60) for sku in skus}

    for sku in skus:
        await engine.send(topics.RECEIPTS, receipt(store, (sku, 100), at=at(opening)))
    for sku in skus:
        await engine.send(topics.ADJUSTMENTS, count(store, (sku, counts[sku]), at=at(counted[sku])))
    for sku in skus:
        await settle(engine, sku, store, [counts[sku], 0, 0, 0, 0])

    burst: list[tuple[str, dict[str, Any], str | None]] = []
    on_hand = dict(counts)
    for index in range(400):
        sku = rng.choice(skus)
        moment = day + timedelta(hours=10, seconds=rng.randint(0, 7200))
        if index < len(skus):
            sku, moment = skus[index], counted[skus[index]]  # exactly at the count: covered by it
        qty = rng.randint(1, 3)
        if rng.random() < 0.75:
            topic, event, signed = topics.SALES, sale(store, (sku, qty), at=at(moment)), -qty
        else:
            topic, event, signed = topics.RETURNS, return_(store, (sku, qty), at=at(moment)), qty
        burst.append((topic, event, None))
        if moment > counted[sku]:
            on_hand[sku] += signed
    burst.append((topics.ADJUSTMENTS, count(store, (skus[1], 999), at=at(day + timedelta(hours=10, minutes=30))),
                  None))  # older than the 11:00 count of that SKU: changes nothing
    await engine.send_many(burst)
    for sku in skus:
        await settle(engine, sku, store, [on_hand[sku], 0, 0, 0, 0])
    postings = await erp_agrees(engine, {(sku, store): [on_hand[sku], 0] for sku in skus})
    report("offline store: 2 h of sales and returns late behind counts", late_events=len(burst),
           skus=len(skus), on_hand=on_hand, erp_posting_ids=postings)
