"""Request bodies: size cap (413), JSON syntax (400), then a model's field rules (422)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from .keys import SETTINGS
from .models import field_problems
from .problems import Problem

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body. aiohttp refuses a body over ``client_max_size`` with 413 while reading."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"request body of {request.content_length} bytes is over the limit of {limit} bytes")
    raw = await request.read()
    if not raw:
        raise Problem(400, "the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}") from None


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
