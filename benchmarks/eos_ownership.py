"""What a Faust ``exactly_once`` agent does when it sends to a partition it does not own: the fact that
decides whether the engine's re-routed legs (``ats.routed``) and dead letters can live under Faust's EOS.

faust-streaming 0.15 gives each *destination* partition its own transaction (``TransactionManager.send``:
``transactional_id = f"{app_id}-{group}-{p}"``, p the partition the record goes to) and commits the input
offsets of partition p in p's transaction. Three cases, on one Kafka:

1. **two workers**, one partition each of ``in`` and ``out`` (co-partitioned, both consumed): worker A
   sends to ``out`` on its own partition (control), on B's partition, and to ``dlq`` (produced only,
   never consumed, as our dead letters); then B sends to its own partition (was B fenced?);
2. **one worker owning both partitions**, sending from ``in``/0 to ``out``/1 (a routed leg to a partition
   with no input of its own), then killed with SIGKILL and restarted: is the record visible
   (read_committed), was ``in``/0 committed, and after the restart is the record there or its input
   replayed?
3. the same send with no crash, watched for 75 s (``benchmarks.eos --ownership-wait``; Kafka aborts a
   transaction left open past the producer's ``transaction.timeout.ms``, 60 s in aiokafka).

``python -m benchmarks.eos_ownership`` runs it alone (with a local Kafka); :mod:`benchmarks.eos` runs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import embedded

IN, OUT, DLQ = "eos-own.in", "eos-own.out", "eos-own.dlq"
SEND_TIMEOUT_S = 15.0
WAIT_S = 75.0


# ---- the worker (python -m benchmarks.eos_ownership worker CONFIG) ------------------------------------
def worker(config: dict[str, Any]) -> None:
    import faust

    status = Path(config["status"])

    def note(event: str, **fields: Any) -> None:
        with status.open("a") as out:
            out.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")

    app = faust.App(config["app_id"], broker=config["broker"], store="memory://", datadir=config["datadir"],
                    processing_guarantee="exactly_once", web_enabled=False, autodiscover=False,
                    key_serializer="raw", value_serializer="raw", topic_partitions=2,
                    consumer_auto_offset_reset="earliest", broker_session_timeout=3,
                    broker_heartbeat_interval=0.5, broker_commit_interval=1.0, logging_config=None)
    source = app.topic(IN, OUT, key_type=bytes, value_type=bytes)
    outputs = {name: app.topic(name, key_type=bytes, value_type=bytes) for name in (OUT, DLQ)}

    async def assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        note("assigned", partitions=sorted(tp.partition for tp in assigned if tp.topic == IN))

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            if message.topic == OUT:
                note("seen", partition=message.partition, value=message.value.decode())
                continue
            order = orjson.loads(message.value)
            if order["app"] != config["app_id"]:
                continue  # another case's order (every case reads the same topic from its beginning)
            producers = sorted(getattr(app.producer, "_transaction_producers", {}))
            started = time.monotonic()
            stage = "send"
            try:  # send (Faust picks the transactional producer), then wait for the broker's answer
                delivery = await asyncio.wait_for(outputs[order["topic"]].send(
                    key=order["case"].encode(), value=message.value, partition=order["partition"]),
                    SEND_TIMEOUT_S)
                stage = "delivery"
                await asyncio.wait_for(asyncio.ensure_future(delivery), SEND_TIMEOUT_S)
                outcome, error = "delivered", None
            except TimeoutError:
                outcome, error = "hung", f"{stage}: no answer in {SEND_TIMEOUT_S:.0f} s"
            except Exception as exc:  # the outcome is what we measure
                outcome, error = "raised", f"{stage}: {type(exc).__name__}: {exc}"
            note("outcome", case=order["case"], source=message.partition, offset=message.offset, outcome=outcome,
                 error=error,
                 seconds=round(time.monotonic() - started, 3), transactional_producers=producers)

    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]
    app.agent(source, name="own")(agent)
    sys.argv[1:] = []
    faust.Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


# ---- the driver -------------------------------------------------------------------------------------
class Process:
    def __init__(self, broker: str, app_id: str, home: Path) -> None:
        home.mkdir(parents=True)
        self.status, self.log_path = home / "status.jsonl", home / "worker.log"
        config = home / "config.json"
        config.write_text(json.dumps({"broker": broker, "app_id": app_id, "datadir": str(home / "data"),
                                      "status": str(self.status)}))
        with self.log_path.open("ab") as log:
            self.process = embedded.child_process(
                [sys.executable, "-m", "benchmarks.eos_ownership", "worker", str(config)], log=log,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})

    def events(self, kind: str) -> list[dict[str, Any]]:
        if not self.status.exists():
            return []
        lines = [json.loads(line) for line in self.status.read_text().splitlines() if line.endswith("}")]
        return [e for e in lines if e["event"] == kind]

    def wait(self, kind: str, test: Any = lambda e: True, timeout: float = 60) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(kind) if test(e)]
            if found:
                return found[-1]
            if self.process.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def alive(self) -> bool:
        return self.process.poll() is None

    def errors(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        keys = ("Fenced", "ProducerSendError", "KeyError", "Crash", "crash", "Traceback", "InvalidProducerEpoch")
        return sorted({line.strip()[:220] for line in text.splitlines() if any(k in line for k in keys)})[:8]


async def _admin(bootstrap: list[str]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    return admin


async def _create(bootstrap: list[str]) -> None:
    admin = await _admin(bootstrap)
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in (IN, OUT, DLQ)])
    finally:
        await admin.close()


async def _produce(bootstrap: list[str], partition: int, order: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(IN, orjson.dumps(order), partition=partition)
    finally:
        await producer.stop()


async def _committed_records(bootstrap: list[str], topic: str, partition: int) -> list[str]:
    """What a read_committed reader sees on ``topic``/``partition`` now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        seen = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                seen.extend(record.value.decode() for record in batch if record.value)
        return seen
    finally:
        await consumer.stop()


async def _group_offset(bootstrap: list[str], group: str, topic: str, partition: int) -> int | None:
    admin = await _admin(bootstrap)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        found = offsets.get(TopicPartition(topic, partition))
        return None if found is None else found.offset
    finally:
        await admin.close()


def _visible_within(bootstrap: list[str], partition: int, case: str, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if any(case in value for value in asyncio.run(_committed_records(bootstrap, OUT, partition))):
            return round(time.monotonic() - started, 1)
        time.sleep(1.0)
    return None


def two_workers(broker: str, bootstrap: list[str], root: Path) -> dict[str, Any]:
    app_id = "bench-eos-own-two"
    a = Process(broker, app_id, root / "a")
    a.wait("assigned", timeout=90)
    b = Process(broker, app_id, root / "b")
    try:
        mine_b = b.wait("assigned", lambda e: len(e["partitions"]) == 1, timeout=90)
        mine_a = a.wait("assigned", lambda e: len(e["partitions"]) == 1, timeout=90)
        if mine_a is None or mine_b is None:
            return {"error": "the two workers did not split the partitions", "a": a.errors(), "b": b.errors()}
        pa, pb = mine_a["partitions"][0], mine_b["partitions"][0]
        cases = [("own partition (control)", a, pa, OUT, pa), ("another worker's partition", a, pa, OUT, pb),
                 ("produce-only topic (dead letters)", a, pa, DLQ, pa),
                 ("B afterwards, its own partition", b, pb, OUT, pb)]
        outcomes = {}
        for case, sender, source, topic, target in cases:
            asyncio.run(_produce(bootstrap, source, {"app": app_id, "case": case, "topic": topic, "partition": target}))
            got = sender.wait("outcome", lambda e, c=case: e["case"] == c, timeout=SEND_TIMEOUT_S * 2 + 10)
            outcomes[case] = got or {"outcome": "no outcome", "worker alive": sender.alive()}
        time.sleep(3.0)  # three commit intervals
        for case, _, _, topic, target in cases:
            visible = any(case in v for v in asyncio.run(_committed_records(bootstrap, topic, target)))
            outcomes[case]["visible_read_committed"] = visible
        return {"outcomes": outcomes, "a_alive": a.alive(), "b_alive": b.alive(), "a_log": a.errors(),
                "b_log": b.errors()}
    finally:
        for process in (b, a):
            embedded.stop_process(process.process, timeout=10)


def one_worker(broker: str, bootstrap: list[str], root: Path, wait_s: float) -> dict[str, Any]:
    app_id = "bench-eos-own-one"
    c = Process(broker, app_id, root / "c")
    result: dict[str, Any] = {}
    case = "routed leg 0->1, then kill -9"
    try:
        if c.wait("assigned", lambda e: e["partitions"] == [0, 1], timeout=90) is None:
            return {"error": "the worker was not assigned both partitions", "log": c.errors()}
        time.sleep(4.0)  # what it read at start (the other cases' records) is acked and committed
        asyncio.run(_produce(bootstrap, 0, {"app": app_id, "case": case, "topic": OUT, "partition": 1}))
        result["send"] = c.wait("outcome", lambda e: e["case"] == case, timeout=40)
        time.sleep(3.0)  # three commit intervals
        result["input_committed_offset_before_kill"] = asyncio.run(_group_offset(bootstrap, app_id, IN, 0))
        result["visible_before_kill"] = any(case in v for v in asyncio.run(_committed_records(bootstrap, OUT, 1)))
    finally:
        c.process.kill()
        c.process.wait()
    restarted = Process(broker, app_id, root / "c2")
    try:
        restarted.wait("assigned", lambda e: e["partitions"] == [0, 1], timeout=90)
        time.sleep(5.0)
        result["input_replayed_after_restart"] = bool(restarted.events("outcome"))
        result["visible_after_restart"] = any(case in v for v in asyncio.run(_committed_records(bootstrap, OUT, 1)))
        quiet = "routed leg 0->1, no crash"
        asyncio.run(_produce(bootstrap, 0, {"app": app_id, "case": quiet, "topic": OUT, "partition": 1}))
        result["quiet_send"] = restarted.wait("outcome", lambda e: e["case"] == quiet, timeout=40)
        result["quiet_visible_after_s"] = _visible_within(bootstrap, 1, quiet, wait_s)
        result["quiet_watched_s"] = wait_s
        later = "routed leg 0->1, after the wait"
        asyncio.run(_produce(bootstrap, 0, {"app": app_id, "case": later, "topic": OUT, "partition": 1}))
        result["send_after_wait"] = restarted.wait("outcome", lambda e: e["case"] == later, timeout=40)
        result["worker_alive_after_wait"] = restarted.alive()
        result["log"] = restarted.errors()
        return result
    finally:
        embedded.stop_process(restarted.process, timeout=10)


def run(broker: str, root: Path, wait_s: float = WAIT_S) -> dict[str, Any]:
    bootstrap = [broker.removeprefix("kafka://")]
    asyncio.run(_create(bootstrap))
    home = root / "ownership"
    return {"two_workers": two_workers(broker, bootstrap, home),
            "one_worker": one_worker(broker, bootstrap, home, wait_s)}


def report(found: dict[str, Any]) -> None:
    print("exactly_once agent sending to a partition it does not own (faust-streaming, Apache Kafka):")
    two = found["two_workers"]
    for case, outcome in two.get("outcomes", {}).items():
        visible = outcome.get("visible_read_committed")
        print(f"  two workers, {case}: {outcome.get('outcome')} {outcome.get('error') or ''}".rstrip()
              + ("" if visible is None else f"; visible to read_committed readers: {visible}"))
    if "error" in two:
        print(f"  two workers: {two['error']}")
    print(f"  two workers afterwards: A alive {two.get('a_alive')}, B alive {two.get('b_alive')}")
    one = found["one_worker"]
    if "error" in one:
        print(f"  one worker: {one['error']}")
        return
    after = one.get("send_after_wait") or {}
    print(f"  one worker owning both, routed leg 0→1: {(one.get('send') or {}).get('outcome')}; input committed "
          f"at {one.get('input_committed_offset_before_kill')}, leg visible (read_committed) before the kill: "
          f"{one.get('visible_before_kill')}; after kill -9 and restart: input replayed "
          f"{one.get('input_replayed_after_restart')}, leg visible {one.get('visible_after_restart')}")
    print(f"  one worker, routed leg 0→1 without a crash: visible after {one.get('quiet_visible_after_s')} s "
          f"(watched {one.get('quiet_watched_s')} s); the next leg: {after.get('outcome')} "
          f"{after.get('error') or ''}; worker alive {one.get('worker_alive_after_wait')}")


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        worker(json.loads(Path(sys.argv[2]).read_text()))
        return
    from streams.kafka import KafkaUnavailable, start_kafka

    with tempfile.TemporaryDirectory(prefix="ats-bench-eos-own-") as scratch:
        try:
            server = start_kafka(Path(scratch) / "kafka",
                                 cache_dir=Path(os.environ.get("ATS_DATA_DIR", ".ats")).resolve())
        except KafkaUnavailable as exc:
            print(f"not run: {exc}")
            return
        with contextlib.ExitStack() as stack:
            stack.callback(server.stop)
            found = run(server.url, Path(scratch))
            print(json.dumps(found, indent=2, default=str))
            report(found)


if __name__ == "__main__":
    main()
