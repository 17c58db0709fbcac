"""Repeated library errors are logged once per window, with a count of what was held back."""

from __future__ import annotations

import logging

from streams.logthrottle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_same_library_error_passes_once_per_window_then_says_how_many_were_held() -> None:
    clock = Clock()
    throttle = Throttle(30, clock=clock)
    first = record("aiokafka.conn", "Unable connect to %r: %s", logging.ERROR, "node-0", "refused")
    assert throttle.filter(first)
    for i in range(500):  # a broker outage: the same template, other arguments
        clock.now += 0.05
        assert not throttle.filter(record("aiokafka.conn", "Unable connect to %r: %s", logging.ERROR, i, "refused"))
    clock.now = 31.0
    after = record("aiokafka.conn", "Unable connect to %r: %s", logging.ERROR, "node-0", "refused")
    assert throttle.filter(after)
    assert "(and 500 like it in the last 30 s, not logged)" in after.getMessage()
    assert after.getMessage().startswith("Unable connect to 'node-0': refused")


def test_kinds_are_apart_and_our_own_lines_and_info_always_pass() -> None:
    throttle = Throttle(30, clock=Clock())
    assert throttle.filter(record("aiokafka.conn", "A"))
    assert throttle.filter(record("aiokafka.conn", "B"))  # another template
    assert throttle.filter(record("aiokafka.conn", "A", logging.WARNING))  # another level
    assert throttle.filter(record("faust.transport", "A"))  # another logger
    for _ in range(3):
        assert throttle.filter(record("streams.engine", "A"))  # the worker's own
        assert throttle.filter(record("aiokafka.conn", "A", logging.INFO))  # below WARNING
    assert not throttle.filter(record("aiokafka.conn", "A"))
