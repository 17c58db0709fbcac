"""``POST /v1/events``: events from systems that cannot speak Kafka, validated like the streams do.

One event, or ``{"events": [...]}`` (at most 500). Every event is validated by
:func:`availability.validation.validate_event` (the rules and reason codes the dead letters use); if
any is invalid the answer is a 422 naming each bad field with the event's index and nothing is
produced. Otherwise every event is produced to its type's topic keyed by its location (``acks=all``)
and the answer is 202 with the accepted ids.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from availability.events import AnyEvent
from availability.routing import producer_key
from availability.topics import TOPIC_FOR_TYPE
from availability.validation import EventRejected, FieldError, validate_event

from .bodies import read_json
from .broker import BrokerErrors
from .keys import BROKER, METRICS
from .models import MAX_EVENTS
from .problems import Problem, unavailable


async def ingest(request: web.Request) -> web.Response:
    items = _items(await read_json(request))
    metrics = request.app[METRICS]
    accepted: list[tuple[AnyEvent, bytes]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        raw = orjson.dumps(item)
        try:
            accepted.append((validate_event(raw), raw))
        except EventRejected as exc:
            rejection = exc.rejection
            metrics.ingest_rejected.labels(rejection.reason).inc()
            fields = rejection.errors or (FieldError("", rejection.detail),)
            errors.extend({"index": index, "field": f.field, "message": f.message, "reason": rejection.reason}
                          for f in fields)
    if errors:
        bad = len({e["index"] for e in errors})
        listed = "; ".join(f"[{e['index']}] {e['field'] or 'event'}: {e['message']}" for e in errors)
        raise Problem(422, f"{bad} of {len(items)} event(s) invalid, none produced: {listed}"[:2000],
                      errors=errors)
    messages = [(TOPIC_FOR_TYPE[event.type], producer_key(event).encode(), raw) for event, raw in accepted]
    try:
        await request.app[BROKER].send_all(messages)
    except BrokerErrors:
        metrics.broker_errors.labels("ingest").inc()
        raise unavailable("the broker", retry_after=2) from None
    for event, _ in accepted:
        metrics.ingested.labels(event.type).inc()
    body = orjson.dumps({"accepted": [event.event_id for event, _ in accepted]})
    return web.Response(body=body, status=202, content_type="application/json")


def _items(data: Any) -> list[Any]:
    """The events of a body: a single event, or the list under ``events``."""
    if not (isinstance(data, dict) and "events" in data and "type" not in data):
        return [data]
    extra = sorted(set(data) - {"events"})
    if extra:
        raise Problem(422, f"a batch has only the field 'events'; unknown: {extra}",
                      errors=[{"field": name, "message": "unknown field"} for name in extra])
    events = data["events"]
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        size = f"got {len(events)}" if isinstance(events, list) else "not a list"
        raise Problem(422, f"events: must be a list of 1 to {MAX_EVENTS} events ({size})",
                      errors=[{"field": "events", "message": f"1 to {MAX_EVENTS} events ({size})"}])
    return events
