"""The worker of :mod:`benchmarks.eos`: a Faust app in the shape of our workload, with co-partitioned outputs
only, run under ``processing_guarantee="at_least_once"`` or ``"exactly_once"``.

``python -m benchmarks.faust_buckets CONFIG.json``. It is PEERS.md's tuned bucket-table variant: sale and
receipt envelopes read in batches (``noack_take``), positions packed per location bucket (key
``partition|location|crc32(sku) % 16``, value ``{"q": {sku: qty}}``) in a memory-store ``Table``, every
changed bucket written once per flush interval. One flush, in the engine's order: write the changed buckets,
wait for delivery, ack the events the flush covers, then commit, **from the agent**. Faust's own commit
timer is off: it runs beside the agent and takes the acked offsets without flushing the producer's buffer,
so under exactly_once it could commit one flush's records in a transaction with the offsets of an
earlier one (see README, "Faust's exactly_once on Kafka").

``"watermarks": true`` is our at-least-once design in small: every bucket also carries, per input topic,
the offset of the last event it includes (``"o"``), and a replayed line whose bucket already includes its
event is skipped. Without it, at-least-once replays double-apply whatever a crash left flushed but not
committed; exactly_once is run without it, so its exactness after a kill is its own.

The worker appends JSON lines to the config's ``status`` file (``time.monotonic()``, comparable between
processes on Linux): ``first`` (the first batch reached the agent: the table is restored and applying),
``flushed`` (lines applied so far), and once every sentinel (one per input partition, produced last) is
in the state: ``done`` with the moment the last line was applied and the moment its commit returned; the
Σ qty per SKU it then holds goes to the ``state`` file. Also ``revoked`` (a rebalance, and what it dropped)
and ``sentinel`` (every application of a sentinel line: one per sentinel in a run, a second is a double
apply).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import weakref
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.streams import _current_event

SIGN = {"sale": -1, "receipt": 1}
BUCKETS = 16
TABLE = "buckets"


def bucket_key(partition: int, location: str, sku: str) -> bytes:
    return f"{partition}|{location}|{zlib.crc32(sku.encode()) % BUCKETS}".encode()


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-{TABLE}-changelog"  # Faust's name for the table's changelog


class BucketWorker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.watermarks = bool(config["watermarks"])
        self.flush_s = float(config["flush_s"])
        self.status = Path(config["status"])
        self.app = faust.App(
            config["app_id"], broker=config["broker"], store="memory://", datadir=config["datadir"],
            processing_guarantee=config["guarantee"], web_enabled=False, autodiscover=False,
            key_serializer="raw", value_serializer="raw", topic_partitions=config["partitions"],
            consumer_auto_offset_reset="earliest", broker_session_timeout=3, broker_heartbeat_interval=0.5,
            broker_commit_interval=3600.0, broker_commit_every=10**12,  # committed by the agent, per flush
            stream_buffer_maxsize=20_000, consumer_max_fetch_size=4 * 1024 * 1024,
            table_standby_replicas=0, logging_config=None,
        )
        self.table = self.app.Table(TABLE, partitions=config["partitions"], key_type=bytes, value_type=bytes)
        self.codes = {topic: str(code) for code, topic in enumerate(config["topics"])}
        self.sentinels = [(bucket_key(p, location, sku), sku) for _, p, sku, location in config["sentinels"]]
        self.sentinel_skus = {sku for _, sku in self.sentinels}
        self.buckets: dict[bytes, dict[str, Any]] = {}  # decoded, as applied (the table holds what was flushed)
        self.dirty: dict[int, set[bytes]] = defaultdict(set)
        self.owners: dict[int, Any] = {}  # an event of each partition: table writes go to its partition
        self.pending: list[Any] = []
        self.lines = 0
        self.done = False
        self.costs: dict[str, Any] = {}
        source = self.app.topic(*config["topics"], key_type=bytes, value_type=bytes)
        self.app.agent(source, name="buckets")(self.process)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

    def log(self, event: str, **fields: Any) -> None:
        with self.status.open("a") as out:
            out.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")

    async def process(self, stream: Any) -> None:
        logging.getLogger().setLevel(logging.WARNING)  # PEERS.md: Faust's dropped debug records cost 13%
        last_flush = time.monotonic()
        first = True
        async for events in stream.noack_take(5000, 0.1):
            if first:
                self.log("first")
                first = False
            for event in events:
                self.apply(event)
            self.pending.extend(events)
            finished = not self.done and self.all_sentinels_seen()
            if finished or time.monotonic() - last_flush >= self.flush_s:
                applied = time.monotonic()
                await self.flush(stream)
                last_flush = time.monotonic()
                self.log("flushed", lines=self.lines, **self.costs)
                if finished:
                    self.finish(applied, last_flush)

    def apply(self, event: Any) -> None:
        message = event.message
        body = orjson.loads(message.value)
        sign, location, partition = SIGN[body["type"]], body["location_id"], message.partition
        code, offset = self.codes[message.topic], message.offset
        touched = set()
        for line in body["lines"]:
            sku = line["sku"]
            key = bucket_key(partition, location, sku)
            bucket = self.buckets.get(key) or self._load(key)
            if self.watermarks and bucket["o"].get(code, -1) >= offset:
                continue  # a replay: this bucket already includes the event
            quantities = bucket["q"]
            quantities[sku] = quantities.get(sku, 0) + sign * line["qty"]
            touched.add(key)
            if sku in self.sentinel_skus:  # each applied once in a run: a second time is a double apply
                self.log("sentinel", sku=sku, partition=partition, offset=offset, qty=quantities[sku])
        for key in touched:
            if self.watermarks:
                self.buckets[key]["o"][code] = offset
            self.dirty[partition].add(key)
        self.owners.setdefault(partition, event)
        self.lines += len(body["lines"])

    def _load(self, key: bytes) -> dict[str, Any]:
        raw = self.table.data.get(key)
        bucket = orjson.loads(raw) if raw is not None else {"q": {}}
        bucket.setdefault("o", {})
        self.buckets[key] = bucket
        return bucket

    async def flush(self, stream: Any) -> None:
        """Changed buckets → wait for delivery → ack what they cover → commit (offsets, or the transaction)."""
        started = time.monotonic()
        records = sum(len(keys) for keys in self.dirty.values())
        for partition, keys in self.dirty.items():
            token = _current_event.set(weakref.ref(self.owners[partition]))  # faust-streaming issue #497
            try:
                for key in keys:
                    self.table[key] = orjson.dumps(self.buckets[key])
            finally:
                _current_event.reset(token)
        self.dirty.clear()
        self.owners.clear()
        written = time.monotonic()
        await self.app.producer.flush()
        delivered = time.monotonic()
        for event in self.pending:
            await stream.ack(event)  # never suspends: no commit can slip in between the acks
        self.pending.clear()
        await self.app.consumer.commit()
        self.costs = {"records": records, "write_s": round(written - started, 3),
                      "deliver_s": round(delivered - written, 3), "commit_s": round(time.monotonic() - delivered, 3)}

    def all_sentinels_seen(self) -> bool:
        for key, sku in self.sentinels:
            bucket = self.buckets.get(key)
            if bucket is None:
                raw = self.table.data.get(key)
                bucket = orjson.loads(raw) if raw is not None else None
            if bucket is None or sku not in bucket["q"]:
                return False
        return True

    def finish(self, applied: float, committed: float) -> None:
        self.done = True
        totals: dict[str, int] = defaultdict(int)
        for raw in self.table.data.values():
            if raw is not None:
                for sku, qty in orjson.loads(raw)["q"].items():
                    totals[sku] += qty
        Path(self.config["state"]).write_bytes(orjson.dumps(totals))
        self.log("done", applied=applied, committed=committed, lines=self.lines)

    def _on_revoked(self, sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        # not flushed, not acked: whoever owns the partition next replays it
        partitions = {tp.partition for tp in revoked}
        self.log("revoked", partitions=sorted(partitions), pending=len(self.pending),
                 dirty=sum(len(keys) for keys in self.dirty.values()))
        self.buckets = {k: v for k, v in self.buckets.items() if int(k.split(b"|", 1)[0]) not in partitions}
        self.pending = [e for e in self.pending if e.message.partition not in partitions]
        for partition in partitions:
            self.dirty.pop(partition, None)
            self.owners.pop(partition, None)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    worker = BucketWorker(config)
    sys.argv[1:] = []  # Faust's worker reads nothing from here
    faust.Worker(worker.app, loglevel="warn", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
