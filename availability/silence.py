"""Silent stores: when a location last spoke, and whether it has been quiet too long while trading.

Per location the workers keep two times, both maxima (so a replay, or a late event, never moves them
back): the latest business time (``occurred_at``) of an event at the location, and the latest arrival
time (the Kafka timestamp of the input record that carried it). A location is **silent** at ``now``
when it is trading now and has been quiet, counting only its trading hours, for longer than the
threshold (``ATS_SILENT_AFTER_SECONDS``): a store that closed at 21:00 and opens at 09:00 is not
flagged at 09:01 for a night without sales, but at 09:00 + the threshold if its tills still say
nothing. A location never heard of is not silent (nothing says it should speak).

Trading hours (``ATS_TRADING_HOURS``) are ``always`` or a time zone then clauses, ``;``-separated::

    Europe/Paris; Mon-Fri 09:00-20:00; Sat 09:00-18:00; Sun 22:00-02:00

A clause is days (``Mon``, ``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon``, ``Daily``) and a local time range;
an end at or before its start runs past midnight into the next day; ``24:00`` ends at midnight. Times
are wall-clock times in the zone (daylight saving included, via :mod:`zoneinfo`).

Pure: every function takes ``now``; the cache value of a location is :func:`encode` / :func:`decode`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from .events import ID_CHARS

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLAUSE = re.compile(r"^(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$")
_DAY = timedelta(days=1)
_LOCATION = re.compile(ID_CHARS)


class TradingHoursError(ValueError):
    """A trading-hours specification that cannot be read; the message says what and where."""


@dataclass(frozen=True)
class Opening:
    """Open on ``weekdays`` (0 = Monday) from ``start`` for ``minutes`` (local wall-clock time)."""

    weekdays: frozenset[int]
    start: time
    minutes: int


@dataclass(frozen=True)
class TradingHours:
    """``zone`` None: always trading."""

    zone: ZoneInfo | None = None
    openings: tuple[Opening, ...] = ()

    @property
    def always(self) -> bool:
        return self.zone is None

    def trading_at(self, at_ms: int) -> bool:
        return self.always or any(start <= at_ms < end for start, end in self._open_spans(at_ms, at_ms))

    def trading_ms(self, start_ms: int, end_ms: int) -> int:
        """Milliseconds of trading time within ``[start_ms, end_ms)``."""
        if end_ms <= start_ms:
            return 0
        if self.always:
            return end_ms - start_ms
        return sum(max(0, min(end, end_ms) - max(start, start_ms)) for start, end in self._open_spans(start_ms, end_ms))

    def _open_spans(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """The openings (epoch ms) of every local day that may overlap ``[start_ms, end_ms]``, in order,
        overlapping ones merged (two clauses may cover the same hour: it counts once)."""
        assert self.zone is not None
        zone = self.zone
        first = datetime.fromtimestamp(start_ms / 1000, zone).date() - _DAY  # an overnight opening of the day before
        last = datetime.fromtimestamp(end_ms / 1000, zone).date()
        spans = []
        day = first
        while day <= last:
            for opening in self.openings:
                if day.weekday() in opening.weekdays:
                    begin = _local_ms(day, opening.start, zone)
                    end = _local_ms(day, opening.start, zone, plus_minutes=opening.minutes)
                    if end > begin:
                        spans.append((begin, end))
            day += _DAY
        merged: list[tuple[int, int]] = []
        for begin, end in sorted(spans):
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((begin, end))
        return merged


ALWAYS: Final = TradingHours()


@dataclass(frozen=True)
class Calendar:
    """Trading hours per location: ``overrides`` for the locations named, ``default`` for every other."""

    default: TradingHours = ALWAYS
    overrides: Mapping[str, TradingHours] = field(default_factory=dict)

    def hours(self, location_id: str) -> TradingHours:
        return self.overrides.get(location_id, self.default)


def parse_calendar(default_spec: str, overrides_text: str | None = None) -> Calendar:
    """``default_spec`` (:func:`parse_trading_hours`) and, optionally, a JSON object of location id →
    specification (the locations whose hours differ, e.g. ``{"DC-1": "always"}``)."""
    default = parse_trading_hours(default_spec)
    if overrides_text is None:
        return Calendar(default)
    try:
        raw = orjson.loads(overrides_text)
    except orjson.JSONDecodeError as exc:
        raise TradingHoursError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TradingHoursError('want a JSON object of location id -> hours, like {"DC-1": "always"}')
    overrides = {}
    for location_id, spec in raw.items():
        if len(location_id) > 64 or not _LOCATION.fullmatch(location_id):
            raise TradingHoursError(f"{location_id[:80]!r} is not a location id (1-64 of A-Z a-z 0-9 . _ : -)")
        if not isinstance(spec, str):
            raise TradingHoursError(f"{location_id}: want a string like 'Europe/Paris; Mon-Sat 09:00-20:00'")
        try:
            overrides[location_id] = parse_trading_hours(spec)
        except TradingHoursError as exc:
            raise TradingHoursError(f"{location_id}: {exc}") from None
    return Calendar(default, overrides)


def _local_ms(day: date, at: time, zone: ZoneInfo, *, plus_minutes: int = 0) -> int:
    """Epoch ms of the wall-clock time ``plus_minutes`` after ``at`` on ``day`` in ``zone``. The arithmetic is
    on the wall clock, as a store's hours are: a 09:00-20:00 store closes at 20:00 local time also on the
    day the clocks change (10 or 12 hours of trading then)."""
    moment = datetime.combine(day, at, zone) + timedelta(minutes=plus_minutes)
    return int(moment.timestamp() * 1000)


def parse_trading_hours(spec: str) -> TradingHours:
    """``always`` or ``ZONE; DAYS HH:MM-HH:MM; ...`` (see the module docstring)."""
    parts = [part.strip() for part in spec.split(";")]
    if parts == ["always"]:
        return ALWAYS
    zone_name, clauses = parts[0], [part for part in parts[1:] if part]
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TradingHoursError(f"{zone_name!r} is not a time zone (like Europe/Paris or UTC); "
                                "write 'always' or 'ZONE; Mon-Fri 09:00-20:00; ...'") from None
    if not clauses:
        raise TradingHoursError(f"no opening hours after the time zone {zone_name!r}: add e.g. 'Mon-Sat 09:00-20:00'")
    return TradingHours(zone, tuple(_opening(clause) for clause in clauses))


def _opening(clause: str) -> Opening:
    match = _CLAUSE.match(clause)
    if match is None:
        raise TradingHoursError(f"{clause!r}: want days and a time range, like 'Mon-Fri 09:00-20:00'")
    start, end = _minutes(match["start"], clause), _minutes(match["end"], clause)
    if start == 24 * 60:
        raise TradingHoursError(f"{clause!r}: an opening cannot start at 24:00")
    minutes = end - start if end > start else end - start + 24 * 60
    return Opening(_weekdays(match["days"], clause), time(start // 60, start % 60), minutes)


def _minutes(text: str, clause: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise TradingHoursError(f"{clause!r}: {text} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _weekdays(text: str, clause: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.lower().split(","):
        first, _, last = item.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise TradingHoursError(f"{clause!r}: {item!r} is not a day or a range of days (Mon, Mon-Fri, Sat,Sun)")
        begin, end = DAYS.index(first), DAYS.index(last or first)
        days.update((begin + step) % 7 for step in range((end - begin) % 7 + 1))
    return frozenset(days)


class Heard(NamedTuple):
    """A location's latest business time and latest arrival time (epoch ms)."""

    business_ms: int
    arrival_ms: int

    def merge(self, other: Heard) -> Heard:
        return Heard(max(self.business_ms, other.business_ms), max(self.arrival_ms, other.arrival_ms))


def encode(heard: Heard) -> bytes:
    """The cache value of a location: ``[business_ms, arrival_ms]``."""
    return orjson.dumps(list(heard))


def decode(raw: bytes | str) -> Heard | None:
    """The times of a cache value; None for a value this version cannot read (never a crash)."""
    try:
        business_ms, arrival_ms = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if not isinstance(business_ms, int) or not isinstance(arrival_ms, int):
        return None
    return Heard(business_ms, arrival_ms)


class Status(NamedTuple):
    quiet_ms: int | None  # since the last arrival (wall time); None: never heard of
    trading_now: bool
    silent: bool


def status(heard: Heard | None, now_ms: int, *, silent_after_s: int, hours: TradingHours) -> Status:
    """Whether a location is silent at ``now_ms``: trading now, and quiet for more than ``silent_after_s``
    of trading time since its last arrival (``silent_after_s`` 0: never silent)."""
    trading = hours.trading_at(now_ms)
    if heard is None:
        return Status(None, trading, False)
    quiet_ms = max(0, now_ms - heard.arrival_ms)
    silent = bool(silent_after_s) and trading and quiet_ms > silent_after_s * 1000 and (
        hours.always or hours.trading_ms(heard.arrival_ms, now_ms) > silent_after_s * 1000)
    return Status(quiet_ms, trading, silent)


def lateness_seconds(business_ms: int, arrival_ms: int) -> float:
    """How long after it happened an event arrived (0 for an event stamped in the future: a skewed clock)."""
    return max(0, arrival_ms - business_ms) / 1000
