"""Availability answers, read from the cache the workers write (never from the broker or the ERP).

Answers of SKUs read recently are kept in memory and served until a worker says they changed
(:mod:`api.answercache`: kept only while subscribed to the workers' change messages and while every
cache epoch is present); a SKU not kept is read whole (``HGETALL``) and kept. Otherwise every request
is one pipelined round trip to the cache: ``HMGET`` of the asked locations when the
scope is a list of locations (asked, or a channel's list), ``HGETALL`` otherwise, one command per
SKU. Scope = the asked locations (if any) ∩ the channel's eligible locations (if a channel is named);
``locations`` lists the positions in scope that exist, ``network_ats`` is the channel's network ATS
over them. A cache that does not answer is a 503, never an answer of zero; so is a cache that lost
positions its workers have not re-written yet: the same round trip reads the cache epoch of every
partition that owns a location in scope (:mod:`streams.cacheepoch` writes them), and one missing is a
503 with ``Retry-After`` until the owner has written its partition whole again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from availability import topics
from availability.channels import ALL_LOCATIONS, ChannelView, network_ats
from availability.events import ChannelName, LocationId, Sku
from availability.routing import owner_partition
from availability.wire import answer_location, rfc3339
from cacheclient import Cache, CacheErrors

from .answercache import SCOPES_PER_SKU, AnswerCache, Kept, Positions, Scope
from .bodies import parse, read_json
from .keys import ANSWERS, CACHE, CHANNELS, CLOCK, METRICS, SETTINGS
from .models import MAX_LOCATIONS, AvailabilityQuery
from .problems import Problem, unavailable

_SKU: TypeAdapter[str] = TypeAdapter(Sku)
_LOCATION: TypeAdapter[str] = TypeAdapter(LocationId)
_CHANNEL: TypeAdapter[str] = TypeAdapter(ChannelName)
JSON = "application/json"
#: reads of positions at most, while their partitions' cache epochs change under them (read_positions)
READ_ATTEMPTS = 3
#: the scope of an answer asked with no channel and no locations
_EVERY_LOCATION: Scope = (None, None)
#: how often the kept answers due for a refresh are read again (refresh_kept), and how many SKUs per round
#: trip: parsing a round trip's answers holds every request in flight, ~25-30 µs of CPU per SKU of 20 locations
REFRESH_POLL_S = 0.25
REFRESH_BATCH = 25

log = logging.getLogger(__name__)


class CacheRebuilding(Exception):
    """The cache lost the positions of these partitions and their owners have not re-written them yet."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partitions {partitions} not yet re-written")
        self.partitions = partitions


async def one(request: web.Request) -> web.Response:
    """``GET /v1/availability/{sku}?location=…&location=…&channel=…``"""
    sku = request.match_info["sku"]
    if not request.query_string:  # the product page's read: a kept SKU (so a valid one) answers at once
        kept = request.app[ANSWERS]
        entry = kept.get(sku) if kept.usable() else None
        if entry is not None:
            request.app[METRICS].answered("kept", 1)
            head, tail = _rendered(entry, sku, None, _EVERY_LOCATION, ALL_LOCATIONS)
            return web.Response(body=head + _as_of(request) + tail, content_type=JSON)
    sku = _check(_SKU, sku, "sku")
    query = request.query
    locations = None
    if "location" in query:
        asked = query.getall("location")
        if len(asked) > MAX_LOCATIONS:
            raise Problem(422, f"location: at most {MAX_LOCATIONS} locations per request, got {len(asked)}")
        locations = [_check(_LOCATION, value, f"location.{i}") for i, value in enumerate(asked)]
    channel_name = query.get("channel")
    if channel_name is not None:
        _check(_CHANNEL, channel_name, "channel")
    as_of, [(head, tail)] = await _answers(request, [sku], locations, channel_name)
    return web.Response(body=head + as_of + tail, content_type=JSON)


async def query(request: web.Request) -> web.Response:
    """``POST /v1/availability/query`` with ``{"skus": [...], "locations"?: [...], "channel"?: "..."}``."""
    body = parse(AvailabilityQuery, await read_json(request))
    as_of, answers = await _answers(request, body.skus, body.locations, body.channel)
    parts = [b'{"items":[']
    for head, tail in answers:  # one copy of up to 1,000 answers into the body, not one per step
        parts += (head, as_of, tail, b",")
    parts[-1] = b"]}"
    return web.Response(body=b"".join(parts), content_type=JSON)


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
                   channel_name: str | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """``as_of``, then each SKU's answer as the bytes before and after its ``as_of`` value: from the
    answers this process keeps when it may serve them (:mod:`api.answercache`), else from the cache."""
    view = channel_view(request, channel_name)
    locations = scope(asked, view)
    kept = request.app[ANSWERS]
    try:
        if kept.usable():
            answers = await _kept_answers(request, kept, skus, locations,
                                          (channel_name, None if asked is None else tuple(asked)), view)
        else:
            partitions = request.app[SETTINGS].partitions
            owners = range(partitions) if locations is None else {owner_partition(loc, partitions)
                                                                  for loc in locations}
            found = await read_positions(request.app[CACHE], skus, locations, owners=sorted(owners))
            answers = [render(sku, positions, view) for sku, positions in zip(skus, found, strict=True)]
            request.app[METRICS].answered("direct", len(skus))
    except (*CacheErrors, CacheRebuilding) as exc:
        raise unreadable(request, exc) from None
    return _as_of(request), answers


def unreadable(request: web.Request, exc: Exception) -> Problem:
    """The 503 for a cache read that failed (:data:`CacheErrors`) or found positions lost and not yet
    re-written (:class:`CacheRebuilding`), counted: never an answer of zero."""
    if isinstance(exc, CacheRebuilding):
        request.app[METRICS].cache_errors.labels("rebuilding").inc()
        lost = ", ".join(map(str, exc.partitions))
        return Problem(503, f"the availability cache lost its data and the workers are re-writing it (partitions "
                       f"{lost}); retry later", headers={"Retry-After": "1"})
    request.app[METRICS].cache_errors.labels("read").inc()
    return unavailable("the availability cache")


def _as_of(request: web.Request) -> bytes:
    return rfc3339(int(request.app[CLOCK]() * 1000)).encode()


async def _kept_answers(request: web.Request, kept: AnswerCache, skus: list[str], locations: list[str] | None,
                        key: Scope, view: ChannelView) -> list[tuple[bytes, bytes]]:
    answers: list[tuple[bytes, bytes] | None] = []
    missing: list[int] = []
    for i, (sku, entry) in enumerate(zip(skus, kept.get_many(skus), strict=True)):
        answers.append(None if entry is None else _rendered(entry, sku, locations, key, view))
        if entry is None:
            missing.append(i)
    metrics = request.app[METRICS]
    metrics.answered("kept", len(skus) - len(missing))
    if missing:
        metrics.answered("read", len(missing))
        asked = [skus[i] for i in missing]
        for i, sku, entry in zip(missing, asked, await read_kept(request.app[CACHE], kept, asked), strict=True):
            answers[i] = _rendered(entry, sku, locations, key, view)
    return answers  # type: ignore[return-value]  # every None was filled


async def read_kept(cache: Cache, kept: AnswerCache, skus: list[str]) -> list[Kept]:
    """Each SKU's positions read whole from the cache, as :meth:`AnswerCache.keep` returns them (kept if
    they may be). A read of the same SKU already under way under the same generation (nothing dropped
    since it started) is joined, not repeated: when a hot SKU is not kept, the requests that ask for it
    before its read is back share that read (without this, ~1,800 of the ~3,800 reads in the first 10 s
    of ``benchmarks.reads`` were such repeats). The read runs in a task of its own: a reader cancelled
    meanwhile does not cancel it for the others."""
    generation, reads = kept.generation, kept.reads
    new = [sku for sku in dict.fromkeys(skus) if (flight := reads.get(sku)) is None or flight[0] != generation]
    if new:
        task = asyncio.ensure_future(_read_and_keep(cache, kept, new, generation))
        for index, sku in enumerate(new):
            reads[sku] = (generation, task, index)
        task.add_done_callback(functools.partial(_read_done, reads, new))
    flights = [reads[sku] for sku in skus]
    results: dict[asyncio.Future[list[Kept]], list[Kept]] = {}
    found = []
    for _, read, index in flights:
        if read not in results:
            results[read] = await asyncio.shield(read)
        found.append(results[read][index])
    return found


async def _read_and_keep(cache: Cache, kept: AnswerCache, skus: list[str], generation: int) -> list[Kept]:
    found = await read_positions(cache, skus, None, owners=list(range(kept.partitions)), epochs=kept.epochs)
    return [kept.keep(generation, sku, positions) for sku, positions in zip(skus, found, strict=True)]


def _read_done(reads: dict[str, Any], skus: list[str], read: asyncio.Future[list[Kept]]) -> None:
    for sku in skus:
        if (entry := reads.get(sku)) is not None and entry[1] is read:
            del reads[sku]
    if not read.cancelled():
        read.exception()  # its readers were given it; a read nobody awaits any more is not an error to log


async def refresh_kept(cache: Cache, kept: AnswerCache) -> None:
    """Read again, every :data:`REFRESH_POLL_S`, the kept answers served past half their age
    (:meth:`AnswerCache.take_due`), so that no hot SKU's answer ages out on a request's path; forever
    (cancel it). A read that fails leaves them to age out: the requests that follow read the cache
    themselves, and answer its errors."""
    while True:
        await asyncio.sleep(REFRESH_POLL_S)
        due = kept.take_due() if kept.usable() else []
        for first in range(0, len(due), REFRESH_BATCH):
            try:
                await read_kept(cache, kept, due[first:first + REFRESH_BATCH])
            except (*CacheErrors, CacheRebuilding) as exc:
                log.debug("reading kept answers again failed: %r", exc)
                break


def _rendered(entry: Kept, sku: str, locations: list[str] | None, key: Scope,
              view: ChannelView) -> tuple[bytes, bytes]:
    answer = entry.rendered.get(key)
    if answer is None:
        answer = render(sku, entry.in_scope(locations), view)
        if len(entry.rendered) < SCOPES_PER_SKU:
            entry.rendered[key] = answer
    return answer


async def read_positions(cache: Cache, skus: list[str], locations: list[str] | None, *,
                         owners: list[int] | None = None,
                         epochs: Mapping[Any, Any] | None = None) -> list[Positions]:
    """Per SKU, the ``(location_id, cache value)`` of every position in scope, in one round trip.

    With ``owners``, never positions of a cache that lost them: the same round trip reads those
    partitions' cache epochs after the positions, and raises :class:`CacheRebuilding` if one is missing.
    A loss before the positions were read shows there, unless the owner re-wrote the partition whole
    (positions, then its epoch) in the meantime: then the epoch is there, with a new stamp. So the epochs
    read after the positions must also be those read before them: ``epochs``, the epochs hash as read
    earlier (the kept answers' last poll), or else read first, in a round trip of its own. A partition
    re-written between the two reads is read again (its epoch now known), :data:`READ_ATTEMPTS` times
    at most, then a 503 like a loss. Seen in CI on a Redis Cluster: a ``FLUSHALL`` of one node, then its
    SKU read as empty while the worker re-wrote it, and answered as such."""
    if locations is not None and not locations:
        return [[] for _ in skus]
    fields = [str(partition) for partition in owners or ()]
    before: list[Any] | None = None
    if fields:
        before = list(await cache.hmget(topics.CACHE_EPOCHS_KEY, fields)) if epochs is None else [
            epochs.get(field.encode()) for field in fields]
    for _ in range(READ_ATTEMPTS):
        pipe = cache.pipeline(transaction=False)
        for sku in skus:
            if locations is None:
                pipe.hgetall(topics.position_key(sku))
            else:
                pipe.hmget(topics.position_key(sku), locations)
        if fields:
            pipe.hmget(topics.CACHE_EPOCHS_KEY, fields)
        results = await pipe.execute()
        if not fields:
            break
        after, results = results[-1], results[:-1]
        missing = [partition for partition, epoch in zip(owners or (), after, strict=True) if epoch is None]
        if missing:
            raise CacheRebuilding(missing)
        changed = [partition for partition, old, new in zip(owners or (), before or (), after, strict=True)
                   if old != new]
        if not changed:
            break
        before = after
    else:
        raise CacheRebuilding(changed)
    found: list[Positions] = []
    for result in results:
        if locations is None:
            pairs = sorted((key.decode(), raw) for key, raw in result.items())
        else:
            pairs = [(location, raw) for location, raw in zip(locations, result, strict=True) if raw is not None]
        found.append([(location, tuple(orjson.loads(raw))) for location, raw in pairs])
    return found


def render(sku: str, positions: Positions, view: ChannelView) -> tuple[bytes, bytes]:
    """One SKU's answer (its positions in scope and the channel's network ATS over them) as JSON, split
    where its ``as_of`` value goes: ``{"sku", "network_ats", "as_of", "locations"}``."""
    locations = [answer_location(location_id, value) for location_id, value in positions if view.eligible(location_id)]
    total = network_ats(view, [(item["location_id"], item["ats"]) for item in locations])
    head = orjson.dumps({"sku": sku, "network_ats": total})[:-1] + b',"as_of":"'
    return head, b'","locations":' + orjson.dumps(locations) + b"}"
