"""Silent stores: trading hours, the silence rule and the cache value (pure; expected values by hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from availability.settings import SettingsError, load_settings
from availability.silence import (
    ALWAYS,
    Calendar,
    Heard,
    TradingHours,
    TradingHoursError,
    decode,
    encode,
    lateness_seconds,
    parse_calendar,
    parse_trading_hours,
    status,
)

MINUTE, HOUR = 60_000, 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


# ---- the rule, always trading ----------------------------------------------------------------------
def test_always_a_location_is_silent_once_quiet_longer_than_the_threshold() -> None:
    heard = Heard(ms("2026-12-07T10:00:00Z"), ms("2026-12-07T10:00:05Z"))
    at_threshold = status(heard, ms("2026-12-07T10:30:05Z"), silent_after_s=1800, hours=ALWAYS)
    assert at_threshold == (1_800_000, True, False)  # exactly the threshold: not yet
    later = status(heard, ms("2026-12-07T10:30:06Z"), silent_after_s=1800, hours=ALWAYS)
    assert later == (1_801_000, True, True)


def test_a_location_never_heard_of_is_not_silent() -> None:
    assert status(None, ms("2026-12-07T10:00:00Z"), silent_after_s=60, hours=ALWAYS) == (None, True, False)


def test_a_threshold_of_zero_never_flags() -> None:
    heard = Heard(0, 0)
    assert not status(heard, ms("2026-12-07T10:00:00Z"), silent_after_s=0, hours=ALWAYS).silent


def test_an_arrival_after_now_is_not_negative_quiet() -> None:
    assert status(Heard(0, 2_000), 1_000, silent_after_s=1, hours=ALWAYS).quiet_ms == 0


# ---- trading hours ---------------------------------------------------------------------------------
PARIS = "Europe/Paris; Mon-Sat 09:00-20:00; Sun 10:00-13:00"


def test_trading_hours_are_local_wall_clock_times() -> None:
    hours = parse_trading_hours(PARIS)
    # 2026-12-07 is a Monday; Paris is UTC+1 in December
    assert hours.trading_at(ms("2026-12-07T08:00:00Z"))  # 09:00 local: opens
    assert not hours.trading_at(ms("2026-12-07T07:59:59Z"))
    assert hours.trading_at(ms("2026-12-07T18:59:59Z"))
    assert not hours.trading_at(ms("2026-12-07T19:00:00Z"))  # 20:00 local: closed
    assert hours.trading_at(ms("2026-12-13T09:30:00Z"))  # Sunday 10:30
    assert not hours.trading_at(ms("2026-12-13T12:00:00Z"))  # Sunday 13:00


def test_an_opening_past_midnight_belongs_to_the_day_it_starts() -> None:
    hours = parse_trading_hours("UTC; Fri 22:00-02:00")
    assert hours.trading_at(ms("2026-12-11T23:00:00Z"))  # Friday night
    assert hours.trading_at(ms("2026-12-12T01:59:00Z"))  # Saturday, before 02:00
    assert not hours.trading_at(ms("2026-12-12T02:00:00Z"))
    assert not hours.trading_at(ms("2026-12-12T23:00:00Z"))  # Saturday night: not a Friday


def test_day_ranges_wrap_around_the_week_and_lists_combine() -> None:
    wrap = parse_trading_hours("UTC; Fri-Mon 10:00-11:00").openings[0]
    assert wrap.weekdays == {4, 5, 6, 0}
    listed = parse_trading_hours("UTC; sat,SUN 10:00-24:00").openings[0]
    assert (listed.weekdays, listed.minutes) == ({5, 6}, 14 * 60)
    assert parse_trading_hours("UTC; Daily 00:00-24:00").openings[0].weekdays == set(range(7))


def test_a_night_closed_does_not_count_as_quiet() -> None:
    hours = parse_trading_hours("UTC; Daily 09:00-20:00")
    heard = Heard(ms("2026-12-07T19:50:00Z"), ms("2026-12-07T19:50:00Z"))
    # 13 h 20 quiet, but 10 minutes before closing and 10 after opening: 20 minutes of trading
    morning = status(heard, ms("2026-12-08T09:10:00Z"), silent_after_s=1800, hours=hours)
    assert morning == (13 * HOUR + 20 * MINUTE, True, False)
    assert status(heard, ms("2026-12-08T09:20:01Z"), silent_after_s=1800, hours=hours).silent
    assert not status(heard, ms("2026-12-07T23:00:00Z"), silent_after_s=60, hours=hours).silent, "closed now"


def test_the_day_the_clocks_go_forward_has_23_hours() -> None:
    hours = parse_trading_hours("Europe/Paris; Daily 00:00-24:00")
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; local midnight is 23:00 UTC before and 22:00 UTC after
    assert hours.trading_ms(ms("2026-03-28T23:00:00Z"), ms("2026-03-29T22:00:00Z")) == 23 * HOUR


def test_overlapping_clauses_count_once() -> None:
    hours = parse_trading_hours("UTC; Mon 09:00-12:00; Mon 10:00-13:00")
    assert hours.trading_ms(ms("2026-12-07T00:00:00Z"), ms("2026-12-08T00:00:00Z")) == 4 * HOUR


@pytest.mark.parametrize(("spec", "message"), [
    ("Mars/Base; Mon 09:00-10:00", "is not a time zone"),
    ("UTC", "no opening hours"),
    ("UTC; Mon 9-10", "want days and a time range"),
    ("UTC; Mon 09:00-25:00", "25:00 is not a time of day"),
    ("UTC; Mon 09:60-10:00", "09:60 is not a time of day"),
    ("UTC; Mon 24:00-02:00", "cannot start at 24:00"),
    ("UTC; Monday 09:00-10:00", "'monday' is not a day"),
    ("UTC; Mon-Xyz 09:00-10:00", "is not a day"),
    ("", "is not a time zone"),
])
def test_a_bad_specification_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(TradingHoursError, match=message):
        parse_trading_hours(spec)


def test_settings_refuse_bad_trading_hours_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"ATS_TRADING_HOURS='UTC; Mon 9-10'.*time range"):
        load_settings({"ATS_TRADING_HOURS": "UTC; Mon 9-10"})
    with pytest.raises(SettingsError, match=r"ATS_SILENT_AFTER_SECONDS"):
        load_settings({"ATS_SILENT_AFTER_SECONDS": "-1"})
    settings = load_settings({})
    assert (settings.silent_after_seconds, settings.calendar) == (1800, Calendar())


# ---- properties -------------------------------------------------------------------------------------
_times = st.integers(min_value=ms("2026-01-01T00:00:00Z"), max_value=ms("2027-01-01T00:00:00Z"))
_clause = st.builds(lambda day, start, length: f"{day} {start // 60:02d}:{start % 60:02d}-"
                                               f"{(start + length) % 1440 // 60:02d}:{(start + length) % 60:02d}",
                    st.sampled_from(["Mon", "Tue-Thu", "Sat,Sun", "Fri-Mon", "Daily"]),
                    st.integers(0, 1439), st.integers(1, 1439))
_hours = st.builds(lambda zone, clauses: parse_trading_hours("; ".join([zone, *clauses])),
                   st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney"]),
                   st.lists(_clause, min_size=1, max_size=3))


@given(_hours, _times, st.integers(0, 10 * 86_400_000), st.integers(0, 10 * 86_400_000))
def test_trading_time_adds_up_and_never_exceeds_the_wall_time(hours: TradingHours, start: int, one: int,
                                                               two: int) -> None:
    middle, end = start + one, start + one + two
    whole = hours.trading_ms(start, end)
    assert 0 <= whole <= end - start
    assert whole == hours.trading_ms(start, middle) + hours.trading_ms(middle, end)


@given(_hours, _times, _times, st.integers(1, 86_400))
def test_silent_only_while_trading_and_only_after_the_threshold(hours: TradingHours, arrival: int, now: int,
                                                                 threshold: int) -> None:
    result = status(Heard(arrival, arrival), now, silent_after_s=threshold, hours=hours)
    assert result.trading_now == hours.trading_at(now)
    if result.silent:
        assert result.trading_now
        assert hours.trading_ms(arrival, now) > threshold * 1000
    elif result.trading_now and now - arrival > threshold * 1000:
        assert hours.trading_ms(arrival, now) <= threshold * 1000


@given(st.integers(0, 2**53), st.integers(0, 2**53), st.integers(0, 2**53), st.integers(0, 2**53))
def test_times_only_move_forward_and_survive_the_cache(a: int, b: int, c: int, d: int) -> None:
    merged = Heard(a, b).merge(Heard(c, d))
    assert merged == (max(a, c), max(b, d))
    assert decode(encode(merged)) == merged


@pytest.mark.parametrize("raw", [b"", b"{}", b"[1]", b"[1, \"2\"]", b"[1.5, 2]", b"nope"])
def test_a_cache_value_this_version_cannot_read_is_none(raw: bytes) -> None:
    assert decode(raw) is None


def test_lateness_is_arrival_minus_business_time_never_negative() -> None:
    assert lateness_seconds(1_000, 3_600_000 + 1_000) == 3600.0
    assert lateness_seconds(5_000, 1_000) == 0.0


# ---- per-location hours ------------------------------------------------------------------------------
def test_locations_named_in_the_file_have_their_own_hours() -> None:
    calendar = parse_calendar("Europe/Paris; Mon-Sat 09:00-20:00", '{"DC-1": "always", "S-LDN": "Europe/London; '
                                                                    'Daily 08:00-22:00"}')
    sunday_noon = ms("2026-12-13T12:00:00Z")
    assert not calendar.hours("S-ANY").trading_at(sunday_noon)  # the default: closed on Sundays
    assert calendar.hours("DC-1").trading_at(sunday_noon)
    assert calendar.hours("S-LDN").trading_at(sunday_noon)
    assert not calendar.hours("S-LDN").trading_at(ms("2026-12-13T22:30:00Z"))


@pytest.mark.parametrize(("text", "message"), [
    ("[1]", "want a JSON object"),
    ("{", "not JSON"),
    ('{"bad id": "always"}', "'bad id' is not a location id"),
    ('{"DC-1": 5}', "DC-1: want a string"),
    ('{"DC-1": "UTC; Mon 9-10"}', "DC-1: 'Mon 9-10': want days"),
])
def test_a_bad_hours_file_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TradingHoursError, match=message):
        parse_calendar("always", text)


def test_settings_read_the_hours_file_at_start_up(tmp_path: Path) -> None:
    good = tmp_path / "hours.json"
    good.write_text('{"DC-1": "always"}', encoding="utf-8")
    settings = load_settings({"ATS_TRADING_HOURS": "UTC; Daily 09:00-17:00", "ATS_TRADING_HOURS_FILE": str(good)})
    assert settings.calendar.hours("DC-1") == ALWAYS
    assert settings.calendar.hours("S-1") == parse_trading_hours("UTC; Daily 09:00-17:00")
    bad = tmp_path / "bad.json"
    bad.write_text('{"DC-1": "Mars/Base; Mon 09:00-10:00"}', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"ATS_TRADING_HOURS_FILE=.*bad.json: DC-1: 'Mars/Base' is not a time zone"):
        load_settings({"ATS_TRADING_HOURS_FILE": str(bad)})
    with pytest.raises(SettingsError, match=r"ATS_TRADING_HOURS_FILE.*no such file"):
        load_settings({"ATS_TRADING_HOURS_FILE": str(tmp_path / "missing.json")})
