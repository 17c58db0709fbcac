"""The input gate: each input partition reaches the state as one unbroken sequence of offsets.

The state of a partition knows the next offset it expects of each input
(:meth:`availability.shard.PartitionState.expects`, restored from the changelog). Every message is
checked against it:

* below it: already in the state (a replay) → skipped;
* at it: applied;
* above it: a **gap**. The engine reads the gap from the log itself (:meth:`streams.logreader.LogReader.read`)
  and applies what it holds, then the message: records the consumer skipped are applied in order, and
  holes in the log (transaction markers, retention on Kafka) are simply absent. Only when the log does
  not answer in time is the message held back (neither applied nor committed) and the consumer
  sought back to the expected offset, again every ``retry_seconds`` until it arrives.

A gap at the end of an input has no later message to reveal it; the engine reads such tails from the
log when an input delivers nothing for a while (``Engine._read_skipped_tails``).

Why the consumer can skip: around a rebalance Faust resumes stream partitions and fetches while it
seeks them to the committed offsets, and then clears its queues when flow resumes (faust-streaming
0.15, ``Recovery._resume_streams``; the engine clears its intake at every rebalance, :mod:`streams.intake`);
what sat in them is gone and its offsets are marked read. Reading the gap from the log does not depend
on Faust's consumer at all.
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

Seek = Callable[[Any, int], Awaitable[None]]


class Verdict(enum.Enum):
    APPLY = "apply"
    COVERED = "covered"
    GAP = "gap"
    HOLD = "hold"


@dataclass
class _Wait:
    expected: int
    sought_at: float = -math.inf


class InputGate:
    def __init__(self, seek: Seek, *, retry_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._seek = seek
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.waiting: dict[Any, _Wait] = {}
        self.gaps = 0
        self.seeks = 0

    def reset(self) -> None:
        """Forget pending seeks (after a rebalance the consumer starts over from committed offsets)."""
        self.waiting.clear()

    def admit(self, tp: Any, offset: int, expected: int | None) -> Verdict:
        if expected is None or offset == expected:
            self.waiting.pop(tp, None)
            return Verdict.APPLY
        if offset < expected:
            return Verdict.COVERED
        wait = self.waiting.get(tp)
        if wait is not None and wait.expected == expected:
            return Verdict.HOLD  # already sought back: wait for the expected offset
        self.gaps += 1
        log.info("%s: offset %d arrived where %d was expected; reading the gap from the log", tp, offset, expected)
        return Verdict.GAP

    def hold(self, tp: Any, expected: int) -> None:
        """The log did not give the gap in time: hold the partition's messages and seek the consumer back."""
        log.warning("%s: the log did not answer for offsets from %d; seeking back", tp, expected)
        self.waiting[tp] = _Wait(expected)

    async def seek_due(self) -> None:
        """Seek back every held partition that was not sought just now."""
        now = self.clock()
        for tp, wait in list(self.waiting.items()):
            if now - wait.sought_at >= self.retry_seconds:
                wait.sought_at = now
                self.seeks += 1
                await self._seek(tp, wait.expected)
