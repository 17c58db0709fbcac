"""Loading a partition, the two heavy parts of ``Engine._load``: its state records read from the table's
store into a :class:`~availability.shard.PartitionState`, and its positions written to the cache whole.

Both give the event loop back as they go (a load runs beside the agent, :mod:`streams.loads`) and stop
once ``current()`` is false: a rebalance came in between, and what the load would still write belongs to
another assignment.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from availability import topics, wire
from availability.shard import PartitionState
from cacheclient import Cache

#: a partition's state records are decoded this many at a time, the event loop served in between
LOAD_SLICE_RECORDS = 200

#: a loaded partition's positions go to the cache in pipelines of about this many (whole SKU hashes each)
RECACHE_SLICE_POSITIONS = 20_000

#: a loaded partition written whole: KEYS[1] a position hash (or a location index), ARGV[1] ``HSET`` (or
#: ``ZADD``), ARGV[2] its field-value (score-member) pairs, separated by spaces (ids have none:
#: ``availability.events.ID_CHARS``). One argument per key, not two per position: redis-py packing each
#: argument in Python was 10% of a 1M-position recovery (py-spy). One key per call: Redis Cluster takes it.
WRITE_WHOLE = """
local command, args = ARGV[1], {}
for token in string.gmatch(ARGV[2], "%S+") do
  args[#args + 1] = token
  if #args == 1000 then redis.call(command, KEYS[1], unpack(args)); args = {} end
end
if #args > 0 then redis.call(command, KEYS[1], unpack(args)) end
return 1
"""
WRITE_WHOLE_SHA = hashlib.sha1(WRITE_WHOLE.encode(), usedforsecurity=False).hexdigest()


async def read_state(store: Any, state: PartitionState, current: Callable[[], bool]) -> int | None:
    """Restore the partition's records from the table's store (Faust's ``Table.data``) into ``state``, a
    slice at a time (the event loop served in between); the number of records, or None once ``current()``
    is false."""
    partition = state.partition
    raw: list[tuple[str, bytes]] = []
    for raw_key, raw_value in stored_items(store, partition):  # no await: the store may change in between
        key = raw_key.decode()
        if raw_value is not None and wire.partition_of_key(key) == partition:
            raw.append((key, raw_value))
    for start in range(0, len(raw), LOAD_SLICE_RECORDS):
        for key, value in raw[start:start + LOAD_SLICE_RECORDS]:
            state.load(key, orjson.loads(value))
        await asyncio.sleep(0)
        if not current():
            return None
    return len(raw)


def stored_items(store: Any, partition: int) -> Iterable[tuple[bytes, bytes | None]]:
    """The store's records to look through for ``partition``'s: on a RocksDB store, which keeps a database
    per partition, that partition's alone (through the whole table, every load of a 1M-position recovery
    read every partition's values: 8 times the 330 MB it needs); on the memory store, all."""
    databases: Any = getattr(store, "_dbs", {})  # faust.stores.rocksdb.Store (not in Faust's declared types)
    own = partition in databases and hasattr(store, "_visible_items")
    items: Iterable[tuple[bytes, bytes | None]] = store._visible_items(databases[partition]) if own else store.items()
    return items


def whole_slices(cache: Cache, state: PartitionState) -> Iterator[Any]:
    """Every position of ``state`` as pipelines of whole SKU hashes and location indexes
    (:data:`WRITE_WHOLE`), about :data:`RECACHE_SLICE_POSITIONS` positions each."""
    by_sku: dict[str, list[bytes]] = defaultdict(list)
    by_location: dict[str, list[str]] = defaultdict(list)
    for sku, location_id, position in state.positions():
        by_sku[sku].append(b"%s %s" % (location_id.encode(), wire.cache_field(position)))
        by_location[location_id].append(f"{position.net} {sku}")
    pipe, size = cache.pipeline(transaction=False), 0
    for sku, fields in by_sku.items():
        pipe.evalsha(WRITE_WHOLE_SHA, 1, topics.position_key(sku), "HSET", b" ".join(fields))
        size += len(fields)
        if size >= RECACHE_SLICE_POSITIONS:
            pipe.publish(topics.CHANGED_CHANNEL, wire.CHANGED_EVERY_SKU)  # after the hashes (api/answercache.py)
            yield pipe
            pipe, size = cache.pipeline(transaction=False), 0
    for location_id, scores in by_location.items():
        pipe.evalsha(WRITE_WHOLE_SHA, 1, topics.location_index_key(location_id), "ZADD", " ".join(scores))
        size += len(scores)
        if size >= RECACHE_SLICE_POSITIONS:
            yield pipe
            pipe, size = cache.pipeline(transaction=False), 0
    pipe.publish(topics.CHANGED_CHANNEL, wire.CHANGED_EVERY_SKU)
    yield pipe


async def write_whole(cache: Cache, pipes: Iterator[Any], current: Callable[[], bool]) -> bool:
    """Execute the pipelines in order, each sent while the cache still works on the one before (two in
    flight at most), :data:`WRITE_WHOLE` loaded first; whether all were written before ``current()`` went
    false. A cache error stops there and is raised (``Engine._recache``: the partition is written whole
    again once the cache answers)."""
    in_flight: list[asyncio.Future[Any]] = []
    try:
        await cache.script_load(WRITE_WHOLE)
        for pipe in pipes:
            if not current():
                return False
            in_flight.append(asyncio.ensure_future(pipe.execute()))
            if len(in_flight) == 2:
                await in_flight.pop(0)
        while in_flight:
            await in_flight.pop(0)
        return current()
    finally:
        for future in in_flight:
            future.cancel()
