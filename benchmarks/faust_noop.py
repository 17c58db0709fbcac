"""The baseline of :mod:`benchmarks.single`: a stock Faust app whose one agent does nothing per message.

``python -m benchmarks.faust_noop BROKER_URL EXPECT OUT TOPIC...``: consumes TOPICs from the beginning in
its own group (``bench-faust-noop``), stock settings (memory store, ``async for`` with Faust's acks; only
the web server is off and the group session is short, as the engine's on this broker), and writes
``{"first": t, "last": t}`` (``time.monotonic()``) to OUT once EXPECT messages have reached the agent.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import faust


def build(broker_url: str, expect: int, out: Path, topic_names: list[str]) -> faust.App:
    app = faust.App("bench-faust-noop", broker=broker_url, store="memory://", web_enabled=False,
                    datadir=str(out.parent / "faust-noop-data"),  # beside OUT, not in the working directory
                    autodiscover=False, consumer_auto_offset_reset="earliest", broker_session_timeout=3,
                    broker_heartbeat_interval=0.5, topic_partitions=8)
    source = app.topic(*topic_names, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")

    async def noop(stream: Any) -> None:
        seen = 0
        first = 0.0
        async for _value in stream:
            seen += 1
            if seen == 1:
                first = time.monotonic()
            if seen == expect:
                done = json.dumps({"first": first, "last": time.monotonic(), "seen": seen})
                out.write_text(done)  # noqa: ASYNC240 - once, after the last message

    app.agent(source, name="noop")(noop)
    return app


def main() -> None:
    broker_url, expect, out, *topic_names = sys.argv[1:]
    app = build(broker_url, int(expect), Path(out), topic_names)
    sys.argv[1:] = []  # Faust's worker reads nothing from here
    faust.Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
