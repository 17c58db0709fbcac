"""The ceiling the domain puts on any engine built on it: an ingest workload applied in this process through
the pure domain (:mod:`availability`), with no broker, no cache, no Faust and no I/O.

Every message is validated, each of its legs applied to the state of the partition that owns its location
(as the worker routes them), and every partition drained as many times as the worker flushed in the run
beside it (a drain encodes what changed since the last, so the count matters). The states are built with
the worker's defaults (position history kept, the worker's garbage collector thresholds). The figure is CPU
time: what one core would do if the engine around the domain cost nothing.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from availability import topics
from availability.routing import legs
from availability.settings import Settings
from availability.shard import PartitionState, Source
from availability.validation import validate_event
from streams.engine import partition_state
from streams.routing import Router
from streams.worker import GC_THRESHOLDS

from .workload import Workload


def measure(workload: Workload, partitions: int, flushes: int) -> dict[str, Any]:
    """``lines_per_s`` (per CPU second) and ``cpu_us_per_line`` of the domain alone on ``workload``,
    drained ``flushes`` times in all (spread evenly over the messages, every partition each time)."""
    cpu_s, _, drains = apply(workload, partitions, flushes)
    return {"lines_per_s": round(workload.lines / cpu_s), "cpu_us_per_line": round(cpu_s / workload.lines * 1e6, 2),
            "drains": drains}


def apply(workload: Workload, partitions: int, flushes: int) -> tuple[float, list[PartitionState], int]:
    """Apply ``workload`` as :func:`measure` says; returns the CPU seconds it took, the partitions' states
    and the drains of each."""
    settings = Settings()
    states = [partition_state(settings, partition) for partition in range(partitions)]
    owner = Router(partitions).owner  # the worker's cached murmur2 (Kafka hands it a record's partition)
    rounds = max(1, flushes // partitions)
    every = max(1, len(workload.messages) // rounds)
    offsets: dict[tuple[str, int], int] = {}
    now_ms = int(time.time() * 1000)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        started = time.process_time()
        for index, (topic, key, value) in enumerate(workload.messages):
            partition = owner(key.decode())
            offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
            event = validate_event(value, expected_type=topics.INPUT_TOPICS[topic])
            source = Source(topics.TOPIC_CODE[topic], offset)
            for leg in legs(event):
                states[owner(leg.location_id)].apply(event, leg, source, now_ms)
            if index % every == every - 1:
                _drain(states, now_ms)
        _drain(states, now_ms)
        cpu_s = time.process_time() - started
    finally:
        gc.set_threshold(*thresholds)
    return cpu_s, states, rounds + 1


def _drain(states: list[PartitionState], now_ms: int) -> None:
    for state in states:
        flush = state.drain(now_ms)
        if flush is not None:  # as the worker does once the flush's outputs are delivered
            state.confirm(flush.postings)
            state.confirm_changes(flush.changes)
