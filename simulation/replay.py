"""``ats replay FILE``: a JSON-lines file of events back onto the input topics.

Each non-blank line is one event, validated by the engine's own rules (:mod:`availability.validation`) and
produced as it stands to its type's topic, keyed by its location (a transfer by its origin), as the
contract asks producers to key. A bad line is reported with its number and reason and skipped, or stops
the replay with ``strict``. Pacing: ``rate`` events per second, or ``speed`` times the gaps between the
events' ``occurred_at`` (an event older than the one before it goes at once), or as fast as possible.

``ats simulate --record FILE`` writes such a file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from availability import topics
from availability.events import Transfer, epoch_ms
from availability.validation import EventRejected, validate_event

from .traffic import Sink


class Line(NamedTuple):
    number: int
    topic: str
    key: str
    value: bytes
    occurred_ms: int
    lines: int


class BadLine(NamedTuple):
    number: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Pacing:
    rate: float | None = None  # events per second
    speed: float | None = None  # x the occurred_at gaps

    def describe(self) -> str:
        if self.rate:
            return f"{self.rate:g} events/s"
        if self.speed:
            return f"{self.speed:g}x business time"
        return "as fast as possible"


@dataclass
class Outcome:
    events: int = 0
    lines: int = 0
    bad: list[BadLine] = field(default_factory=list)
    stopped_at: int | None = None  # the line a strict replay stopped at
    seconds: float = 0.0


def parse(number: int, raw: bytes) -> Line | BadLine:
    try:
        event = validate_event(raw)
    except EventRejected as exc:
        return BadLine(number, exc.rejection.reason, exc.rejection.detail)
    key = event.from_location_id if isinstance(event, Transfer) else event.location_id
    count = len(event.lines or ())
    return Line(number, topics.TOPIC_FOR_TYPE[event.type], key, raw, epoch_ms(event.occurred_at), count)


def read(path: Path) -> Iterator[Line | BadLine]:
    """Every non-blank line of ``path``, parsed, with its 1-based line number."""
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            stripped = raw.strip()
            if stripped:
                yield parse(number, stripped)


def count_lines(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for raw in source if raw.strip())


async def replay(sink: Sink, path: Path, pacing: Pacing, *, strict: bool = False,
                 on_line: Callable[[Line | BadLine], None] | None = None) -> Outcome:
    """Produce every good line of ``path`` through ``sink`` at ``pacing``; returns what happened."""
    outcome = Outcome()
    started = time.monotonic()
    first_ms: int | None = None
    for item in read(path):
        if on_line is not None:
            on_line(item)
        if isinstance(item, BadLine):
            outcome.bad.append(item)
            if strict:
                outcome.stopped_at = item.number
                break
            continue
        first_ms = item.occurred_ms if first_ms is None else first_ms
        due = _due(pacing, outcome.events, item.occurred_ms - first_ms)
        if due is not None and (wait := due - (time.monotonic() - started)) > 0:
            await asyncio.sleep(wait)
        await sink.send_raw(item.topic, item.key, item.value)
        outcome.events += 1
        outcome.lines += item.lines
    await sink.settle()
    outcome.seconds = time.monotonic() - started
    return outcome


def _due(pacing: Pacing, index: int, since_first_ms: int) -> float | None:
    """Seconds after the start when event ``index`` is due (None: now)."""
    if pacing.rate:
        return index / pacing.rate
    if pacing.speed:
        return max(0, since_first_ms) / 1000 / pacing.speed
    return None
