"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

Handlers raise :class:`Problem`; the middleware (:mod:`api.edge`) turns it (and aiohttp's own HTTP
errors: 404, 405, 413, …) into a problem response with :func:`problem_for`. An unexpected exception is
logged and answered with a 500 problem, never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from .keys import REQUEST_ID, SETTINGS

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Content", 500: "Internal Server Error", 503: "Service Unavailable",
           504: "Gateway Timeout"}
_PASSED_HEADERS = {"allow", "retry-after", "www-authenticate", "location"}


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update(extra)
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_TYPE, headers=headers)


class Problem(Exception):
    """Raised by a handler to answer with a problem: ``raise Problem(422, "skus: too many")``."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def response(self) -> web.Response:
        return problem(self.status, self.detail, headers=self.headers, **self.extra)


def unavailable(what: str, retry_after: int = 1) -> Problem:
    """503 for a dependency that does not answer: the client may retry after ``retry_after`` seconds."""
    return Problem(503, f"{what} is unavailable; retry later", headers={"Retry-After": str(retry_after)})


def bounded_int(raw: str | None, field: str, *, default: int, maximum: int) -> int:
    """A query parameter that is an integer from 1 to ``maximum`` (``default`` when absent), else a 422."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        message = f"must be an integer from 1 to {maximum}"
        raise Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])
    return int(raw)


def problem_for(request: web.Request, exc: Exception) -> web.Response:
    """The problem response for what a handler raised: a :class:`Problem`, one of aiohttp's HTTP errors
    (404, 405, 413, …), or anything else (logged, a 500). aiohttp's redirects and other non-errors are not
    problems: the caller re-raises those."""
    if isinstance(exc, Problem):
        return exc.response()
    if isinstance(exc, web.HTTPException):
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = f"request body over the limit of {request.app[SETTINGS].max_body_bytes} bytes"
        elif exc.status == 404:
            detail = f"no resource at {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        return problem(exc.status, detail, headers={k: v for k, v in exc.headers.items()
                                                    if k.lower() in _PASSED_HEADERS})
    rid = request.get(REQUEST_ID)
    log.error("unhandled error on %s %s (request %s)", request.method, request.path, rid, exc_info=exc)
    return problem(500, f"internal error; it has been logged with request id {rid}", request_id=rid)
