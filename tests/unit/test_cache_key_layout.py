"""The cache's key layout on a Redis Cluster: which keys share a slot, and why none has to.

Redis Cluster puts a key on slot ``CRC16(key) mod 16384``, or, when the key holds a ``{…}`` hash tag,
on the slot of the tag alone. Every command the product sends names one key (``HSET``/``HGETALL``/
``HMGET`` of one SKU's hash, ``ZADD``/``ZRANGE`` of one location's index, ``SET``/``GET`` of one
reservation, one heartbeat, the epochs hash); several keys are only ever touched through pipelines,
which a cluster client splits per node. So no two keys need to share a slot, and no key the product
names has a hash tag: SKUs and locations spread over every node, and a hot store's index and a hot
SKU's hash sit wherever their own names put them. The one use of hash tags is the opposite: the cache
epochs hash has a copy on *every* master (``ats:v1:cache-epochs:{e<i>}``), so that data lost on any
one node shows. The order a pipeline needs across nodes is :mod:`cacheclient.cluster`'s too.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from availability import topics
from cacheclient.cluster import _choose_tags, copy_key, fan_out, merge, runs_last

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
SLOTS = 16_384


def _whole_key_slot(key: str) -> int:
    """The slot the whole key hashes to, as if it had no hash tag."""
    from binascii import crc_hqx

    return crc_hqx(key.encode(), 0) % SLOTS


@settings(max_examples=300, deadline=None)
@given(sku=st.text(ID_ALPHABET, min_size=1, max_size=64), location=st.text(ID_ALPHABET, min_size=1, max_size=64))
def test_sku_and_location_keys_carry_no_hash_tag(sku: str, location: str) -> None:
    """Validated SKUs and locations cannot hold ``{`` or ``}``: their keys hash whole."""
    for key in (topics.position_key(sku), topics.location_index_key(location)):
        assert "{" not in key
        assert key_slot(key.encode()) == _whole_key_slot(key)


def test_fixed_keys_and_channels_carry_no_hash_tag() -> None:
    for key in (topics.CACHE_EPOCHS_KEY, topics.ERP_BOOK_KEY, topics.heartbeat_key("host-1"),
                topics.worker_stats_key("host-1"), topics.DECISIONS_CHANNEL, topics.CHANGED_CHANNEL):
        assert "{" not in key
        assert key_slot(key.encode()) == _whole_key_slot(key)


def test_positions_spread_evenly_over_the_nodes_of_a_cluster() -> None:
    """10,000 SKUs on a 3-master cluster (slots split in thirds): each node holds about a third."""
    per_node = Counter(key_slot(topics.position_key(f"SKU-{i}").encode()) * 3 // SLOTS for i in range(10_000))
    assert set(per_node) == {0, 1, 2}
    assert all(3_000 < count < 3_700 for count in per_node.values())


def test_a_hold_and_its_claim_live_apart_and_need_not_meet() -> None:
    """A reservation's decision and its claim are two keys on their own slots: the API sets the claim
    (``SET NX``) and reads the decision in separate commands. A reservation id may hold braces (it is
    free text): they only move that id's own keys, which no multi-key command names."""
    assert key_slot(topics.reservation_key("R-1").encode()) != key_slot(topics.reservation_claim_key("R-1").encode())
    tagged = topics.reservation_key("a{b}c")
    assert key_slot(tagged.encode()) == key_slot(b"b")


def test_announcements_and_epochs_run_in_a_pipelines_second_stage() -> None:
    """On a cluster the epochs vouch for positions written or read before them, and a change or decision
    message must not arrive before what it announces (:mod:`cacheclient.cluster`)."""
    assert runs_last(("PUBLISH", topics.CHANGED_CHANNEL, b"SKU-1"))
    assert runs_last(("HSET", topics.CACHE_EPOCHS_KEY, "3", "w@1"))
    assert runs_last(("HMGET", topics.CACHE_EPOCHS_KEY, "0", "1"))
    assert not runs_last(("HSET", topics.position_key("SKU-1"), "S-1", b"[1,0,0,0,0,0]"))
    assert not runs_last(("SET", topics.reservation_key("R-1"), b"{}"))
    assert not runs_last(("ZADD", topics.location_index_key("S-1"), 1, "SKU-1"))


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


def _three_masters() -> dict[int, list[_Node]]:
    masters = [_Node(f"127.0.0.1:{7000 + i}") for i in range(3)]
    return {slot: [masters[min(slot * 3 // SLOTS, 2)]] for slot in range(SLOTS)}


def test_the_epochs_hash_has_a_copy_on_every_master_of_a_cluster() -> None:
    """One copy per master that owns slots, hash-tagged onto that master; the same slot map gives the same
    copies in every process (the worker writes what the API reads)."""
    slots = _three_masters()
    tags = _choose_tags(slots)
    assert sorted(tags) == ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
    for master, (tag, slot) in tags.items():
        key = copy_key(tag)
        assert key == f"{topics.CACHE_EPOCHS_KEY}:{{{tag}}}"
        assert key_slot(key.encode()) == slot
        assert slots[slot][0].name == master
    assert _choose_tags(_three_masters()) == tags


def test_epochs_copies_read_as_one_hash_present_only_where_every_copy_is() -> None:
    """A node that lost its data lost its copy: its partitions read as missing, as after a FLUSHALL."""
    assert merge("HMGET", [[b"w@1", b"w@1"], [b"w@1", None], [b"w@1", b"w@1"]]) == [b"w@1", None]
    assert merge("HGETALL", [{b"0": b"w@1", b"1": b"w@1"}, {b"0": b"w@1"}]) == {b"0": b"w@1"}
    assert merge("HGETALL", [{b"0": b"w@1"}, {b"0": b"w@2"}]) == {b"0": b"w@1|w@2"}  # one copy rewritten: a change
    assert merge("HSET", [1, 1, 1]) == 1
    copies = fan_out(("HMGET", topics.CACHE_EPOCHS_KEY, "0"), {"keys": [topics.CACHE_EPOCHS_KEY]}, ["k1", "k2"])
    assert copies == [(("HMGET", "k1", "0"), {"keys": ["k1"]}), (("HMGET", "k2", "0"), {"keys": ["k2"]})]
