"""Bearer parsing and scope checks (pure: no server)."""

from __future__ import annotations

import pytest

from api.auth import authorize, bearer_token, scopes_of
from availability.settings import parse_tokens

TOKENS = parse_tokens("read-1=availability:read; both-2=availability:read,reservations:write;ops=admin")


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), (" Bearer abc", "abc"),
    (None, None), ("", None), ("Bearer", None), ("Bearer ", None), ("Basic abc", None), ("abc", None),
    ("Bearer a b", None),
])
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_scopes_of_a_token() -> None:
    assert scopes_of(TOKENS, "both-2") == frozenset({"availability:read", "reservations:write"})
    assert scopes_of(TOKENS, "both-") is None
    assert scopes_of(TOKENS, "both-22") is None
    assert scopes_of(TOKENS, "") is None
    assert scopes_of({}, "read-1") is None


@pytest.mark.parametrize(("header", "scope", "status"), [
    ("Bearer read-1", "availability:read", 200),
    ("Bearer read-1", "reservations:write", 403),
    ("Bearer both-2", "reservations:write", 200),
    ("Bearer ops", "availability:read", 403),
    ("Bearer ops", "admin", 200),
    ("Bearer nope", "availability:read", 401),
    (None, "availability:read", 401),
    ("Basic cmVhZC0xOg==", "availability:read", 401),
])
def test_authorize(header: str | None, scope: str, status: int) -> None:
    verdict = authorize(TOKENS, header, scope)
    assert verdict.status == status
    assert "read-1" not in verdict.detail
    assert "both-2" not in verdict.detail


def test_token_spec_parsing() -> None:
    assert parse_tokens("a=admin") == {"a": frozenset({"admin"})}
    for bad in ("a", "=admin", "a=", "a=owner"):
        with pytest.raises(ValueError, match=r"token=scope|unknown scope"):
            parse_tokens(bad)
