"""Availability answers, read from the cache the workers write (never from the broker or the ERP).

Every request is one pipelined round trip to the cache: ``HMGET`` of the asked locations when the
scope is a list of locations (asked, or a channel's list), ``HGETALL`` otherwise, one command per
SKU. Scope = the asked locations (if any) ∩ the channel's eligible locations (if a channel is named);
``locations`` lists the positions in scope that exist, ``network_ats`` is the channel's network ATS
over them. A cache that does not answer is a 503, never an answer of zero; so is a cache that lost
positions its workers have not re-written yet: the same round trip reads the cache epoch of every
partition that owns a location in scope (:mod:`streams.cacheepoch` writes them), and one missing is a
503 with ``Retry-After`` until the owner has written its partition whole again.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability import topics
from availability.channels import ChannelView, network_ats
from availability.events import ChannelName, LocationId, Sku
from availability.routing import owner_partition
from availability.wire import answer_location, rfc3339

from .bodies import parse, read_json
from .keys import CACHE, CHANNELS, CLOCK, METRICS, SETTINGS
from .models import MAX_LOCATIONS, AvailabilityQuery
from .problems import Problem, unavailable

_SKU: TypeAdapter[str] = TypeAdapter(Sku)
_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)
_CHANNEL: TypeAdapter[str] = TypeAdapter(ChannelName)


class CacheRebuilding(Exception):
    """The cache lost the positions of these partitions and their owners have not re-written them yet."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partitions {partitions} not yet re-written")
        self.partitions = partitions


async def one(request: web.Request) -> web.Response:
    """``GET /v1/availability/{sku}?location=…&location=…&channel=…``"""
    sku = _check(_SKU, request.match_info["sku"], "sku")
    asked = request.query.getall("location", [])
    if len(asked) > MAX_LOCATIONS:
        raise Problem(422, f"location: at most {MAX_LOCATIONS} locations per request, got {len(asked)}")
    locations = [_check(_LOCATION, value, f"location.{i}") for i, value in enumerate(asked)] or None
    channel_name = request.query.get("channel")
    if channel_name is not None:
        _check(_CHANNEL, channel_name, "channel")
    items = await _answers(request, [sku], locations, channel_name)
    return web.json_response(items[0], dumps=_dumps)


async def query(request: web.Request) -> web.Response:
    """``POST /v1/availability/query`` with ``{"skus": [...], "locations"?: [...], "channel"?: "..."}``."""
    body = parse(AvailabilityQuery, await read_json(request))
    items = await _answers(request, body.skus, body.locations, body.channel)
    return web.json_response({"items": items}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _check(adapter: TypeAdapter[str], value: str, field: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"]
        raise Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}]) from None


def channel_view(request: web.Request, name: str | None) -> ChannelView:
    views = request.app[CHANNELS]
    view = views.get(name)
    if view is None:
        known = ", ".join(views.names) or "none are configured"
        raise Problem(422, f"channel: unknown channel {name!r} (known: {known})",
                      errors=[{"field": "channel", "message": "unknown channel"}])
    return view


def scope(asked: list[str] | None, view: ChannelView) -> list[str] | None:
    """The locations to read (request order, no duplicates), or ``None`` for every location."""
    eligible = view.eligible_locations
    if asked is None:
        return sorted(eligible) if eligible is not None else None
    return [location for location in dict.fromkeys(asked) if eligible is None or location in eligible]


async def _answers(request: web.Request, skus: list[str], asked: list[str] | None,
                   channel_name: str | None) -> list[dict[str, Any]]:
    view = channel_view(request, channel_name)
    locations = scope(asked, view)
    partitions = request.app[SETTINGS].partitions
    owners = range(partitions) if locations is None else {owner_partition(loc, partitions) for loc in locations}
    try:
        positions = await read_positions(request.app[CACHE], skus, locations, owners=sorted(owners))
    except (RedisError, OSError, TimeoutError):
        request.app[METRICS].cache_errors.labels("read").inc()
        raise unavailable("the availability cache") from None
    except CacheRebuilding as exc:
        request.app[METRICS].cache_errors.labels("rebuilding").inc()
        lost = ", ".join(map(str, exc.partitions))
        raise Problem(503, f"the availability cache lost its data and the workers are re-writing it (partitions "
                      f"{lost}); retry later", headers={"Retry-After": "1"}) from None
    as_of = rfc3339(int(request.app[CLOCK]() * 1000))
    return [answer(sku, found, view, as_of) for sku, found in zip(skus, positions, strict=True)]


async def read_positions(cache: Redis, skus: list[str], locations: list[str] | None, *,
                         owners: list[int] | None = None) -> list[list[tuple[str, list[int]]]]:
    """Per SKU, the ``(location_id, cache value)`` of every position in scope, in one round trip; with
    ``owners``, raises :class:`CacheRebuilding` if the cache epoch of one of those partitions is missing."""
    if locations is not None and not locations:
        return [[] for _ in skus]
    pipe = cache.pipeline(transaction=False)
    if owners:
        pipe.hmget(topics.CACHE_EPOCHS_KEY, [str(partition) for partition in owners])
    for sku in skus:
        if locations is None:
            pipe.hgetall(topics.position_key(sku))
        else:
            pipe.hmget(topics.position_key(sku), locations)
    results = await pipe.execute()
    if owners:
        epochs, results = results[0], results[1:]
        missing = [partition for partition, epoch in zip(owners, epochs, strict=True) if epoch is None]
        if missing:
            raise CacheRebuilding(missing)
    found: list[list[tuple[str, list[int]]]] = []
    for result in results:
        if locations is None:
            pairs = sorted((key.decode(), raw) for key, raw in result.items())
        else:
            pairs = [(location, raw) for location, raw in zip(locations, result, strict=True) if raw is not None]
        found.append([(location, orjson.loads(raw)) for location, raw in pairs])
    return found


def answer(sku: str, positions: list[tuple[str, list[int]]], view: ChannelView, as_of: str) -> dict[str, Any]:
    """One SKU's answer: its positions in scope and the channel's network ATS over them."""
    locations = [answer_location(location_id, value) for location_id, value in positions if view.eligible(location_id)]
    total = network_ats(view, [(item["location_id"], item["ats"]) for item in locations])
    return {"sku": sku, "network_ats": total, "as_of": as_of, "locations": locations}
