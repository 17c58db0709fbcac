"""Request bodies: size cap (413), JSON syntax and nesting depth (400), then a model's field rules (422)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from .keys import SETTINGS
from .models import field_problems
from .problems import Problem

M = TypeVar("M", bound=BaseModel)

#: Deepest nesting a body may have. The deepest the API reads is 5 (``{"events": [{"lines": [{}]}]}``);
#: orjson parses up to 1,024 levels but writes only 254, so a deeper event could not be re-encoded.
MAX_JSON_DEPTH = 32


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body. aiohttp refuses a body over ``client_max_size`` with 413 while reading."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"request body of {request.content_length} bytes is over the limit of {limit} bytes")
    raw = await request.read()
    if not raw:
        raise Problem(400, "the request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    if _nested_deeper(data, MAX_JSON_DEPTH):
        raise Problem(400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _nested_deeper(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse(model: type[M], data: Any) -> M:
    """Validate parsed JSON against a request model; 422 naming every bad field."""
    if not isinstance(data, dict):
        raise Problem(422, "the request body must be a JSON object",
                      errors=[{"field": "", "message": "must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_problems(exc.errors(include_url=False, include_input=False))
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        raise Problem(422, detail[:2000], errors=errors) from None
