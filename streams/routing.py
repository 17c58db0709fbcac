"""Re-routing to the owner partition: the envelope on the internal topic, and a cached owner lookup."""

from __future__ import annotations

from functools import lru_cache

import orjson

from availability.routing import Leg, owner_partition


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
