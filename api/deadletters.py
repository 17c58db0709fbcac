"""Dead letters over HTTP (admin scope): list them, look at one, and redrive them.

``GET /v1/deadletters`` pages through ``inventory.dead-letter`` newest first
(:func:`availability.deadletters.scan`); ``GET /v1/deadletters/{id}`` is one record with its whole payload;
``POST /v1/deadletters/redrive`` re-submits records through the validation every event goes through
(:func:`availability.deadletters.resubmit`) and produces the accepted ones exactly as ``POST /v1/events``
does (their type's topic, keyed by location, ``acks=all``), each with the header
``ats-redrive-of: <dead-letter id>``. Redriving twice applies nothing twice: the engine applies an
``event_id`` once.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from availability import deadletters as dl
from availability import topics
from availability.routing import producer_key

from .bodies import parse, read_json
from .broker import BrokerErrors
from .deadletterlog import DeadLetterLog, opened
from .keys import BROKER, CLOCK, METRICS, SETTINGS
from .models import MAX_REPEATED, RedriveRequest
from .problems import Problem, bounded_int, unavailable

_LOG_ERRORS = (KafkaError, OSError, TimeoutError)


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/deadletters?reason=…&topic=…&since=…&limit=…&cursor=…``: newest first, paged."""
    query = request.query
    flt = _filter(request, query.getall("reason", []), query.get("topic"), query.get("since"))
    limit = bounded_int(query.get("limit"), "limit", default=dl.DEFAULT_PAGE, maximum=dl.MAX_PAGE)
    cursor = _checked(dl.decode_cursor, query["cursor"]) if "cursor" in query else None
    try:
        async with opened(request.app[SETTINGS]) as log:
            bounds = await _bounds(log, flt, cursor)
            page = await log.run(dl.scan(bounds, flt, limit=limit))
    except _LOG_ERRORS:
        request.app[METRICS].broker_errors.labels("deadletters").inc()
        raise unavailable("the broker", retry_after=2) from None
    return _json({"items": [dl.to_item(letter) for letter in page.items],
                  "next_cursor": dl.encode_cursor(page.cursor) if page.cursor is not None else None,
                  "scanned": page.scanned})


async def show_dead_letter(request: web.Request) -> web.Response:
    """``GET /v1/deadletters/{id}``: one dead letter with its whole payload."""
    dead_letter_id = request.match_info["id"]
    if dead_letter_id == "redrive":  # /v1/deadletters/redrive is the redrive resource: only POST there
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    partition, offset = _checked(dl.parse_id, dead_letter_id)
    try:
        async with opened(request.app[SETTINGS]) as log:
            found = await _by_ids(log, [(partition, offset)])
    except _LOG_ERRORS:
        request.app[METRICS].broker_errors.labels("deadletters").inc()
        raise unavailable("the broker", retry_after=2) from None
    if not found:
        raise Problem(404, f"no dead letter {dead_letter_id} in {topics.DEAD_LETTER} (never written, or expired)")
    return _json(dl.to_item(found[0], full_payload=True))


async def redrive(request: web.Request) -> web.Response:
    """``POST /v1/deadletters/redrive``: re-submit the chosen dead letters; a report per record."""
    body = parse(RedriveRequest, await read_json(request))
    _check_selection(body)
    flt = _filter(request, body.reason or [], body.topic, body.since)
    cursor = _checked(dl.decode_cursor, body.cursor) if body.cursor is not None else None
    ids = [_checked(dl.parse_id, text) for text in body.ids or ()]
    next_cursor: dict[int, int] | None = None
    try:
        async with opened(request.app[SETTINGS]) as log:
            if ids:
                letters = await _by_ids(log, ids)
            else:
                bounds = await _bounds(log, flt, cursor, body.range)
                page = await log.run(dl.scan(bounds, flt, limit=body.limit))
                letters, next_cursor = page.items, page.cursor
    except _LOG_ERRORS:
        request.app[METRICS].broker_errors.labels("deadletters").inc()
        raise unavailable("the broker", retry_after=2) from None
    correction = dl.correction_bytes(body.correction) if body.correction is not None else None
    resubmissions = [dl.resubmit(letter, correction) for letter in dl.oldest_first(letters)]
    produced = not body.dry_run
    if produced:
        await _produce(request, [r for r in resubmissions if r.event is not None])
    items = [dl.report_item(r, produced=produced and r.event is not None) for r in resubmissions]
    found = {letter.id for letter in letters}
    items += [dl.not_found_item(f"{p}:{o}") for p, o in dict.fromkeys(ids) if f"{p}:{o}" not in found]
    return _json({"dry_run": body.dry_run, "summary": dl.summarize(items), "items": items,
                  "next_cursor": dl.encode_cursor(next_cursor) if next_cursor is not None else None})


async def _produce(request: web.Request, accepted: list[dl.Resubmission]) -> None:
    messages = []
    for resubmission in accepted:
        assert resubmission.event is not None
        assert resubmission.raw is not None
        headers = [(dl.REDRIVE_HEADER, resubmission.letter.id.encode())]
        messages.append((topics.TOPIC_FOR_TYPE[resubmission.event.type],
                         producer_key(resubmission.event).encode(), resubmission.raw, headers))
    if not messages:
        return
    try:
        await request.app[BROKER].send_traced(messages)
    except BrokerErrors:
        request.app[METRICS].broker_errors.labels("redrive").inc()
        raise unavailable("the broker (some records may have been produced; a retry applies nothing twice)",
                          retry_after=2) from None


def _check_selection(body: RedriveRequest) -> None:
    chosen = body.ids is not None or body.range is not None or body.reason or body.topic or body.since
    problems = []
    if not chosen:
        problems.append(("ids", "choose records: ids, range, reason, topic or since"))
    if body.ids is not None and (body.range is not None or body.cursor is not None):
        problems.append(("ids", "ids cannot be combined with range or cursor"))
    if body.correction is not None and (body.ids is None or len(set(body.ids)) != 1):
        problems.append(("correction", "a correction replaces the payload of exactly one record: give one id"))
    if body.range is not None and body.range.to_offset < body.range.from_offset:
        problems.append(("range.to_offset", "must not be below range.from_offset"))
    if problems:
        raise Problem(422, "; ".join(f"{f}: {m}" for f, m in problems),
                      errors=[{"field": f, "message": m} for f, m in problems])


async def _bounds(log: DeadLetterLog, flt: dl.Filter, cursor: dict[int, int] | None,
                  selected: Any = None) -> dict[int, tuple[int, int]]:
    """partition → (low, below) to scan: the whole log, or a range, below the cursor, from ``since`` on."""
    partitions = await log.partitions()
    if selected is not None:
        partitions = [p for p in partitions if p == selected.partition]
    bounds = await log.bounds(partitions)
    if selected is not None:
        bounds = {p: (max(low, selected.from_offset), min(end, selected.to_offset + 1))
                  for p, (low, end) in bounds.items()}
    if cursor is not None:
        bounds = {p: (low, min(end, cursor.get(p, end))) for p, (low, end) in bounds.items()}
    if flt.since_ms is not None:
        bounds = await log.since(bounds, flt.since_ms)
    return bounds


async def _by_ids(log: DeadLetterLog, ids: list[tuple[int, int]]) -> list[dl.DeadLetter]:
    """The dead letters with these ids that the log holds (at most one fetch per partition at a time)."""
    bounds = await log.bounds(sorted({p for p, _ in ids} & set(await log.partitions())))
    wanted = [(p, o) for p, o in dict.fromkeys(ids) if p in bounds and bounds[p][0] <= o < bounds[p][1]]
    found: list[dl.DeadLetter] = []
    while wanted:
        round_, seen = [], set()
        for p, o in wanted:
            if p not in seen:
                seen.add(p)
                round_.append((p, o))
        fetched = await log.fetch([dl.Fetch(p, o, o + 1) for p, o in round_])
        found += [letter for records in fetched.values() for letter in records]
        wanted = [item for item in wanted if item not in round_]
    return found


def _filter(request: web.Request, reasons: list[str], topic: str | None, since: str | None) -> dl.Filter:
    if len(reasons) > MAX_REPEATED:
        message = f"at most {MAX_REPEATED} values, got {len(reasons)}"
        raise Problem(422, f"reason: {message}", errors=[{"field": "reason", "message": message}])
    known = set(dl.REASONS_LISTED)
    unknown = [r for r in reasons if r not in known]
    if unknown:
        message = f"unknown reason(s) {unknown}; one of {sorted(known)}"
        raise Problem(422, f"reason: {message}", errors=[{"field": "reason", "message": message}])
    if topic is not None and topic not in topics.INPUT_TOPICS:
        message = f"one of {sorted(topics.INPUT_TOPICS)}"
        raise Problem(422, f"topic: {message}", errors=[{"field": "topic", "message": message}])
    now_ms = int(request.app[CLOCK]() * 1000)
    since_ms = _checked(dl.parse_since, since, now_ms) if since is not None else None
    return dl.Filter(frozenset(reasons), topic, since_ms)


def _checked(parse_value: Any, *args: Any) -> Any:
    try:
        return parse_value(*args)
    except dl.DeadLetterError as exc:
        raise Problem(422, str(exc), errors=[{"field": exc.field, "message": exc.message}]) from None


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
