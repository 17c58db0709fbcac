"""Re-routing to the owner partition: the envelope on the internal topic, and a cached owner lookup."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from availability import topics
from availability.routing import ALL, DESTINATION, ORIGIN, Leg, owner_partition


class Tick(NamedTuple):
    now_ms: int


class RoutedLeg(NamedTuple):
    leg: str
    location_id: str
    topic: str  # where the event first arrived
    partition: int
    offset: int
    payload: bytes


def read_routed(value: bytes | None) -> Tick | RoutedLeg:
    """A record of the internal topic (a clock tick or a re-routed leg); ``ValueError`` saying what is
    wrong with anything else. Only workers write there, but a record that cannot be read must become a
    dead letter, never crash the agent that would then read it again at every replay."""
    try:
        envelope: Any = orjson.loads(value if value is not None else b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise ValueError("not a JSON object")
    kind = envelope.get("kind")
    if kind == "tick":
        return Tick(_field(envelope, "now_ms", int))
    if kind != "leg":
        raise ValueError(f"kind must be 'tick' or 'leg', not {kind!r}")
    leg, topic = _field(envelope, "leg", str), _field(envelope, "topic", str)
    if leg not in (ALL, ORIGIN, DESTINATION):
        raise ValueError(f"leg must be one of {ALL!r}, {ORIGIN!r}, {DESTINATION!r}, not {leg!r}")
    if topic not in topics.INPUT_TOPICS:
        raise ValueError(f"topic {topic!r} is not an input topic")
    return RoutedLeg(leg, _field(envelope, "location_id", str), topic, _field(envelope, "partition", int),
                     _field(envelope, "offset", int), _field(envelope, "payload", str).encode())


def _field(envelope: dict[str, Any], name: str, kind: type) -> Any:
    value = envelope.get(name)
    if type(value) is not kind:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a string'}, not {value!r}")
    return value


class Router:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.owner = lru_cache(maxsize=65_536)(self._owner)

    def _owner(self, location_id: str) -> int:
        return owner_partition(location_id, self.partitions)

    @staticmethod
    def leg_message(leg: Leg, topic: str, partition: int, offset: int, payload: bytes) -> tuple[bytes, bytes]:
        """``(key, value)`` of a leg sent to its owner; it keeps the original event and where it came from."""
        envelope = {"kind": "leg", "leg": leg.leg, "location_id": leg.location_id, "topic": topic,
                    "partition": partition, "offset": offset, "payload": payload.decode()}
        return leg.location_id.encode(), orjson.dumps(envelope)
