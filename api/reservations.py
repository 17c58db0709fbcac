"""Reservations: the API produces the command; the worker that owns the location decides.

``POST``: register a waiter on the app's decisions listener, *then* look at the cached decision (a
retried ``reservation_id`` gets its original outcome without a new command), *then* produce the hold
and wait for its decision: 201 held, 409 rejected with shortfalls, 504 if none arrives within
``ATS_HOLD_TIMEOUT_MS`` (the client can GET the id later). ``DELETE`` releases the same way and
answers with the final decision; ``GET`` reads the cached decision.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from availability import topics
from availability.events import ReferenceId
from availability.reservations import HELD, REJECTED
from availability.validation import EventRejected, validate_event
from availability.wire import rfc3339
from cacheclient import CacheErrors

from .bodies import parse, read_json
from .broker import BrokerErrors
from .decisions import Accept, Waiter
from .keys import ANSWERS, BROKER, CACHE, CLOCK, DECISIONS, METRICS, SETTINGS
from .models import ReservationRequest
from .problems import Problem, unavailable

_ID: TypeAdapter[str] = TypeAdapter(ReferenceId)


async def create(request: web.Request) -> web.Response:
    """``POST /v1/reservations``"""
    body = parse(ReservationRequest, await read_json(request))
    command = {**_command(request, body.location_id, body.reservation_id, "hold"),
               "ttl_seconds": body.ttl_seconds, "lines": [line.model_dump() for line in body.lines]}
    if body.channel is not None:
        command["channel"] = body.channel
    raw = _validated(command)
    async with await _waiting(request, body.reservation_id, lambda _: True, "hold") as waiter:
        decision = await _cached(request, body.reservation_id, "hold")
        if decision is None:
            await _claim(request, body.reservation_id, body.location_id)
            await _produce(request, body.location_id, raw, "hold")
            decision = await _outcome(request, waiter, body.reservation_id, "hold")
    return _decided(request, decision, "hold", status=409 if decision["status"] == REJECTED else 201)


async def status(request: web.Request) -> web.Response:
    """``GET /v1/reservations/{reservation_id}``"""
    reservation_id = _reservation_id(request)
    decision = await _cached(request, reservation_id, "status")
    if decision is None:
        days = request.app[SETTINGS].dedupe_window_seconds / 86_400
        raise Problem(404, f"no reservation {reservation_id!r} (never decided, or forgotten after {days:g} days)")
    return _json(decision)


async def release(request: web.Request) -> web.Response:
    """``DELETE /v1/reservations/{reservation_id}``: frees what is left of a hold; 200 with the final state."""
    reservation_id = _reservation_id(request)
    async with await _waiting(request, reservation_id, _final, "release") as waiter:
        decision = await _cached(request, reservation_id, "release")
        if decision is None:
            raise Problem(404, f"no reservation {reservation_id!r} to release")
        if decision["status"] == HELD:
            raw = _validated(_command(request, decision["location_id"], reservation_id, "release"))
            await _produce(request, decision["location_id"], raw, "release")
            decision = await _outcome(request, waiter, reservation_id, "release")
    return _decided(request, decision, "release", status=200)


def _final(decision: dict[str, Any]) -> bool:
    return bool(decision["status"] != HELD)


def _reservation_id(request: web.Request) -> str:
    value = request.match_info["reservation_id"]
    try:
        return _ID.validate_python(value)
    except ValidationError as exc:
        message = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise Problem(422, f"reservation_id: {message}",
                      errors=[{"field": "reservation_id", "message": message}]) from None


def _command(request: web.Request, location_id: str, reservation_id: str, action: str) -> dict[str, Any]:
    now_ms = int(request.app[CLOCK]() * 1000)
    return {"event_id": f"api:{action}:{uuid.uuid4().hex}", "type": "reservation", "occurred_at": rfc3339(now_ms),
            "location_id": location_id, "reservation_id": reservation_id, "action": action, "source": "api"}


def _validated(command: dict[str, Any]) -> bytes:
    """The command as the worker will read it, checked by the rules the worker applies (one place)."""
    raw = orjson.dumps(command)
    try:
        validate_event(raw, expected_type="reservation")
    except EventRejected as exc:
        errors = [{"field": f.field, "message": f.message, "reason": exc.rejection.reason}
                  for f in exc.rejection.errors]
        raise Problem(422, exc.rejection.detail, errors=errors) from None
    return raw


async def _waiting(request: web.Request, reservation_id: str, accept: Accept, action: str) -> Any:
    decisions = request.app[DECISIONS]
    if not await decisions.live(within=min(2.0, request.app[SETTINGS].hold_timeout_ms / 1000)):
        _count(request, action, "unavailable")
        request.app[METRICS].cache_errors.labels("subscribe").inc()
        raise unavailable("the decisions channel of the cache")
    return decisions.waiting(reservation_id, accept)


async def _cached(request: web.Request, reservation_id: str, action: str) -> dict[str, Any] | None:
    try:
        return await request.app[DECISIONS].current(reservation_id)
    except CacheErrors:
        _count(request, action, "unavailable")
        request.app[METRICS].cache_errors.labels("read").inc()
        raise unavailable("the cache") from None


async def _claim(request: web.Request, reservation_id: str, location_id: str) -> None:
    """Claim the id for this location; another location's claim is a 422 (the same one's: a retry)."""
    key, ttl = topics.reservation_claim_key(reservation_id), request.app[SETTINGS].dedupe_window_seconds
    try:
        cache = request.app[CACHE]
        claimed = await cache.set(key, location_id.encode(), nx=True, ex=ttl)
        owner = None if claimed else await cache.get(key)
    except CacheErrors:
        _count(request, "hold", "unavailable")
        request.app[METRICS].cache_errors.labels("write").inc()
        raise unavailable("the cache") from None
    if isinstance(owner, str):
        owner = owner.encode()
    if owner is not None and owner != location_id.encode():
        _count(request, "hold", "conflict")
        message = f"in use at location {owner.decode(errors='replace')!r}; an id names one hold at one location"
        raise Problem(422, f"reservation_id {reservation_id!r} is {message}",
                      errors=[{"field": "reservation_id", "message": message, "reason": "reservation_id_in_use"}])


async def _produce(request: web.Request, location_id: str, raw: bytes, action: str) -> None:
    try:
        await request.app[BROKER].send_all([(topics.RESERVATIONS, location_id.encode(), raw)])
    except BrokerErrors:
        _count(request, action, "unavailable")
        request.app[METRICS].broker_errors.labels(action).inc()
        raise unavailable("the broker", retry_after=2) from None


async def _outcome(request: web.Request, waiter: Waiter, reservation_id: str, action: str) -> dict[str, Any]:
    timeout_ms = request.app[SETTINGS].hold_timeout_ms
    try:
        return await asyncio.wait_for(waiter.future, timeout_ms / 1000)
    except TimeoutError:
        pass
    late = await _cached(request, reservation_id, action)  # a decision published while unsubscribed
    if late is not None and waiter.accept(late):
        return late
    _count(request, action, "timeout")
    raise Problem(504, f"no decision on reservation {reservation_id!r} within {timeout_ms} ms; it may still be "
                  f"decided: GET /v1/reservations/{reservation_id}",
                  headers={"Location": location(reservation_id), "Retry-After": "1"})


def _decided(request: web.Request, decision: dict[str, Any], action: str, *, status: int) -> web.Response:
    # Read your writes: the decision comes on one subscription, the worker's "these SKUs changed" on
    # another, and either may be read first. Drop the kept answers of the hold's SKUs before the client
    # learns the outcome, so its next read shows the reservation.
    request.app[ANSWERS].changed([line["sku"] for line in decision.get("lines") or ()])
    _count(request, action, str(decision["status"]))
    response = _json(decision, status=status)
    response.headers["Location"] = location(decision["reservation_id"])
    return response


def location(reservation_id: str) -> str:
    """The reservation's URL; the id percent-encoded (an id may hold any character, a header may not)."""
    return "/v1/reservations/" + quote(reservation_id, safe="")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _count(request: web.Request, action: str, outcome: str) -> None:
    request.app[METRICS].reservations.labels(action, outcome).inc()
