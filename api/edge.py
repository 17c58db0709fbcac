"""The one middleware every request passes through, in this order: metrics (outermost: every status
counted, the problems included), problems (what a handler raises becomes ``application/problem+json``),
auth (the route's scope), the query parameters the route takes.

One layer rather than four: each layer was an awaited coroutine and a look-up of the route's entry per
request, ~10 % of the API's CPU on the availability read (py-spy, ``python -m benchmarks.reads --profile``).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .auth import refusal
from .keys import METRICS, ROUTE_SPECS
from .metrics import route_template
from .problems import problem_for
from .routes import check_query


@web.middleware
async def edge_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
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
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].request_done(route_template(request), request.method, status,
                                          time.perf_counter() - started)
