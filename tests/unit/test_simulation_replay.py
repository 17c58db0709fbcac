"""``ats replay``'s reading and pacing, without a broker."""

from __future__ import annotations

from pathlib import Path

import orjson

from availability import topics
from simulation.replay import BadLine, Line, Pacing, _due, read
from tests.builders import receipt, transfer


def test_each_line_goes_to_its_types_topic_keyed_by_its_location_and_bad_lines_keep_their_number(
        tmp_path: Path) -> None:
    good = receipt("S-1", ("A", 2), ("B", 1))
    moved = transfer("DC-1", "S-1", "shipped", ("A", 1))
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(good) + b"\n\n" + b'{"type": "sale"}\n' + orjson.dumps(moved) + b"\nnot json\n")
    parsed = list(read(path))
    assert [item.number for item in parsed] == [1, 3, 4, 5]
    first, missing, second, broken = parsed
    assert isinstance(first, Line)
    assert (first.topic, first.key, first.lines) == (topics.RECEIPTS, "S-1", 2)
    assert first.value == orjson.dumps(good)  # produced as it stands
    assert isinstance(second, Line)
    assert (second.topic, second.key) == (topics.TRANSFERS, "DC-1")
    assert isinstance(missing, BadLine)
    assert missing.reason
    assert isinstance(broken, BadLine)
    assert broken.reason


def test_pacing_by_rate_by_business_time_or_at_once() -> None:
    assert _due(Pacing(rate=100), 50, 123_000) == 0.5
    assert _due(Pacing(speed=60), 7, 120_000) == 2.0  # two minutes of business time at 60x: 2 s
    assert _due(Pacing(speed=60), 8, -5_000) == 0  # older than the first event: at once
    assert _due(Pacing(), 10_000, 999_000) is None
