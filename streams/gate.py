"""The input gate: each input partition reaches the state as one unbroken sequence of offsets.

The state of a partition knows the next offset it expects of each input
(:meth:`availability.shard.PartitionState.expects`, restored from the changelog). Every message is
checked against it:

* below it: already in the state (a replay) → acknowledged, not applied;
* at it: applied;
* above it: a gap. Either the log itself has a hole there (transaction markers, aborted records,
  retention on real Kafka) or the consumer skipped records. The log is asked directly, with a probe
  read at the expected offset: a real hole is stepped over; skipped records are waited for, the message
  is held back (neither applied nor acknowledged) and the consumer is sought back to them, again every
  ``retry_seconds`` until they arrive.

Why the consumer can skip: around a rebalance Faust resumes stream partitions and fetches while it
seeks them to the committed offsets, and then clears its channel queues when flow resumes
(faust-streaming 0.15, ``Recovery._resume_streams``); what sat in them is gone and its offsets are
marked read. The engine keeps its own queue out of that clearing (:func:`streams.engine`), and this
gate makes any other skip harmless instead of a silent loss.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: ``probe(tp, offset)``: the first offset at or after ``offset`` that the log holds (None: none yet).
Probe = Callable[[Any, int], Awaitable[int | None]]
Seek = Callable[[Any, int], Awaitable[None]]


class Verdict(enum.Enum):
    APPLY = "apply"
    COVERED = "covered"
    HOLD = "hold"


@dataclass
class _Wait:
    expected: int  # what the state expects
    resume: int  # the first offset the log holds from there: where the consumer is sought back to
    sought_at: float = -math.inf


class InputGate:
    def __init__(self, seek: Seek, probe: Probe, *, retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seek = seek
        self._probe = probe
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.waiting: dict[Any, _Wait] = {}
        self.holes = 0
        self.seeks = 0

    def reset(self) -> None:
        """Forget pending seeks (after a rebalance the consumer starts over from committed offsets)."""
        self.waiting.clear()

    async def admit(self, tp: Any, offset: int, expected: int | None) -> Verdict:
        if expected is None or offset == expected:
            self.waiting.pop(tp, None)
            return Verdict.APPLY
        if offset < expected:
            return Verdict.COVERED
        wait = self.waiting.get(tp)
        if wait is None or wait.expected != expected:
            resume = await self._probe(tp, expected)
            if resume is None or resume > offset:  # the log does not answer (yet): ask again later
                return Verdict.HOLD
            wait = self.waiting[tp] = _Wait(expected, resume)
            if resume > expected:
                self.holes += 1
                log.info("%s: offsets %d..%d are not in the log; going on from %d", tp, expected, resume - 1, resume)
            else:
                log.info("%s: offset %d arrived where %d was expected; seeking back", tp, offset, expected)
        if offset == wait.resume:
            del self.waiting[tp]
            return Verdict.APPLY
        return Verdict.HOLD

    async def seek_due(self) -> None:
        """Seek back every partition that waits for skipped records and was not sought just now."""
        now = self.clock()
        for tp, wait in list(self.waiting.items()):
            if now - wait.sought_at >= self.retry_seconds:
                wait.sought_at = now
                self.seeks += 1
                await self._seek(tp, wait.resume)
