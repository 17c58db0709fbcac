"""Repeated library warnings and errors, once per window instead of once per retry.

While the broker is down, aiokafka and Faust log the same connection error every few milliseconds (a
30 s outage wrote thousands of ERROR lines): the one line that matters drowns, and log shippers pay for
the rest. :class:`Throttle` lets the first record of a kind through (kind: logger, level and message
template, before its arguments), holds back the same kind for ``window_seconds``, and the next one after
the window says how many were held back. Only records of the listed libraries at WARNING and above are
throttled; the worker's own lines always pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

#: loggers whose repeated warnings and errors are throttled (their children included)
LIBRARIES = ("aiokafka", "faust", "mode", "kafka")


class Throttle(logging.Filter):
    def __init__(self, window_seconds: float = 30.0, *, libraries: Iterable[str] = LIBRARIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window_seconds
        self.libraries = tuple(libraries)
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind → (window start, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.libraries):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        started, held = self._kinds.get(kind, (None, 0))
        if started is not None and now - started < self.window:
            self._kinds[kind] = (started, held + 1)
            return False
        if len(self._kinds) > 1_000:  # kinds are message templates: a few dozen; never grow without bound
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} like it in the last {self.window:.0f} s, not logged)"
        return True


def install(logger: logging.Logger, throttle: Throttle | None = None) -> Throttle:
    """Add one throttle to every handler of ``logger`` (the root logger: every record reaches them)."""
    throttle = throttle or Throttle()
    for handler in logger.handlers:
        handler.addFilter(throttle)
    return throttle
