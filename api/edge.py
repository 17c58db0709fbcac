"""The one middleware every request passes through, in this order: metrics (outermost: every status
counted, the problems included), the request id, problems (what a handler raises becomes
``application/problem+json``), auth (the route's scope), the query parameters the route takes.

Every response carries ``X-Request-Id``: the caller's own (letters, digits, ``._:-``, at most 128), or
one made here. A 500 logs it and puts it in its body, so a support engineer goes from the caller's
report to the log line.

One layer rather than four: each layer was an awaited coroutine and a look-up of the route's entry per
request, ~10 % of the API's CPU on the availability read (py-spy, ``python -m benchmarks.reads --profile``).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from aiohttp import web

from .auth import refusal
from .keys import METRICS, REQUEST_ID, ROUTE_SPECS
from .metrics import route_template
from .problems import problem_for
from .routes import check_query

_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    """The caller's ``X-Request-Id`` if it is a plain token, else a new one (16 hex digits)."""
    return given if given is not None and _CALLER_ID.fullmatch(given) else os.urandom(8).hex()


@web.middleware
async def edge_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    request[REQUEST_ID] = rid = request_id(request.headers.get("X-Request-Id"))
    try:
        response: web.StreamResponse
        try:
            route = request.app[ROUTE_SPECS].get(request.match_info.route)
            refused = None if route is None or route.scope is None else refusal(request, route.scope)
            if refused is not None:
                response = refused
            else:
                if route is not None and request.query_string:
                    check_query(request, route)
                response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = problem_for(request, exc)
        except Exception as exc:
            response = problem_for(request, exc)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].request_done(route_template(request), request.method, status,
                                          time.perf_counter() - started)
