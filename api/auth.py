"""Bearer tokens with scopes (``ATS_API_TOKENS``): 401 without a valid token, 403 without the scope.

The presented token is compared in constant time against *every* configured token (no early exit,
so timing tells nothing about which token came close). Tokens are never logged: only the route,
the outcome and the scope are.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web

from .keys import TOKENS
from .problems import problem

log = logging.getLogger(__name__)

REALM = "ats"


class Verdict(NamedTuple):
    """``status`` 200 (allowed), 401 (no or unknown token) or 403 (token without the scope)."""

    status: int
    detail: str


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` if absent or another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def scopes_of(tokens: Mapping[str, frozenset[str]], presented: str) -> frozenset[str] | None:
    """The scopes of the presented token, comparing against every configured token in constant time."""
    found: frozenset[str] | None = None
    candidate = presented.encode()
    for token, scopes in tokens.items():
        if hmac.compare_digest(candidate, token.encode()):
            found = scopes
    return found


def authorize(tokens: Mapping[str, frozenset[str]], header: str | None, scope: str) -> Verdict:
    presented = bearer_token(header)
    if presented is None:
        return Verdict(401, "send Authorization: Bearer <token>")
    scopes = scopes_of(tokens, presented)
    if scopes is None:
        return Verdict(401, "the bearer token is not valid")
    if scope not in scopes:
        return Verdict(403, f"the token lacks the scope {scope!r}")
    return Verdict(200, "ok")


def refusal(request: web.Request, scope: str) -> web.Response | None:
    """The 401 or 403 for a request to a route that needs ``scope``; ``None`` when the token has it."""
    tokens: dict[str, frozenset[str]] = request.app[TOKENS]
    verdict = authorize(tokens, request.headers.get("Authorization"), scope)
    if verdict.status == 401:
        log.info("401 on %s %s", request.method, request.match_info.route.resource)
        return problem(401, verdict.detail, headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'})
    if verdict.status == 403:
        log.info("403 on %s %s: scope %s", request.method, request.match_info.route.resource, scope)
        return problem(403, verdict.detail, headers={
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'})
    return None
