"""schemathesis against the OpenAPI document: generated requests (valid and invalid) get no 5xx and
no response that breaks the document. The API runs as ``python -m api`` on a real broker and cache
with a real worker deciding holds, exactly as deployed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    negative_data_rejection,
    positive_data_acceptance,
)

from api import openapi, routes
from streams.embedded import stop_process

from .apiserver import ADMIN, TOKENS, bearer
from .cluster import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHANNELS = '{"channels": {"ecom": {"locations": "all", "default_buffer": 1}, "stores": {"locations": ["S-1"]}}}'
SPEC = openapi.build(routes.ROUTES, channels=["ecom", "stores"])
schema = schemathesis.openapi.from_dict(SPEC)
schema.config.generation.update(max_examples=50, modes=["positive", "negative"])
# a body over ATS_MAX_BODY_BYTES is refused with 413 before it is read: a right rejection of invalid data
# too (e.g. an ERP book of more than 10,000 positions, which is also over 1 MiB)
_rejection = schema.config.checks.negative_data_rejection
schema.config.checks.negative_data_rejection = type(_rejection)(expected_statuses=[*_rejection.expected_statuses, 413])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_url(engine: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    channels = tmp_path_factory.mktemp("api") / "channels.json"
    channels.write_text(CHANNELS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env.update(ATS_BROKER_URL=engine.broker_url, ATS_REDIS_URL=engine.redis_url, ATS_API_TOKENS=TOKENS,
               ATS_API_PORT=str(port), ATS_CHANNELS_FILE=str(channels), ATS_HOLD_TIMEOUT_MS="20000",
               ATS_TICK_INTERVAL_MS="200")
    log_path: Path = tmp_path_factory.mktemp("api-log") / "api.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)
    yield url
    stop_process(process, timeout=10)


def test_the_served_document_is_the_generated_one(api_url: str) -> None:
    with urllib.request.urlopen(f"{api_url}/openapi.json", timeout=5) as response:
        served = orjson.loads(response.read())
    assert served == orjson.loads(orjson.dumps(SPEC))
    assert served["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in served["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in routes.ROUTES if not r.hidden}


#: operations whose bodies have rules JSON Schema cannot say (a SKU twice in one hold, a transfer from a
#: location to itself, a count below zero, a delta of zero, a position twice in an ERP book): a
#: schema-valid body may rightly get a 422.
CROSS_FIELD_RULES = {("POST", "/v1/events"), ("POST", "/v1/reservations"), ("PUT", "/v1/erp/book"),
                     # a selection is needed, a correction goes with one id, a cursor is one the API gave out
                     ("POST", "/v1/deadletters/redrive"),
                     # since has a grammar (RFC 3339 or 15m) and a cursor is opaque: a string may be a 422
                     ("GET", "/v1/deadletters"), ("GET", "/v1/positions/{sku}/{location_id}/history")}
#: ``/v1/availability/{sku}`` also matches the SKU named "query": GET there is that SKU's answer, so
#: ``Allow`` on ``/v1/availability/query`` rightly lists GET beside the documented POST (likewise
#: ``/v1/deadletters/{id}`` and ``/v1/deadletters/redrive``).
SHARED_PATHS = {"/v1/availability/query", "/v1/deadletters/redrive"}
#: operations whose only inputs are path and query strings: a "negative" integer or number there is on
#: the wire the same digits as a valid id (SKU "123" is a SKU), so a 200 for it is right. Unknown and
#: repeated query parameters are still refused; test_api_http checks that directly.
STRING_INPUTS = {("GET", "/v1/availability/{sku}"), ("GET", "/v1/reservations/{reservation_id}"),
                 ("DELETE", "/v1/reservations/{reservation_id}")}


def negates_authorization(case: schemathesis.Case) -> bool:
    """Whether the case's invalid part is its ``Authorization`` header (from the bearer security scheme):
    such a case goes out with the header as generated, since our bearer token would replace exactly the
    part under test and the server would rightly accept the rest."""
    data = case.meta.phase.data if case.meta is not None else None
    if data is None:
        return False
    names = {data.parameter, *(mutation.parameter for mutation in data.mutations)}
    return any(name is not None and name.lower() == "authorization" for name in names)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: schemathesis.Case, api_url: str) -> None:
    excluded = []
    if (case.method.upper(), case.path) in CROSS_FIELD_RULES:
        excluded.append(positive_data_acceptance)
    if case.path in SHARED_PATHS:
        excluded.append(allow_header_conformance)
    if (case.method.upper(), case.path) in STRING_INPUTS:
        excluded.append(negative_data_rejection)
    headers = None if negates_authorization(case) else bearer(ADMIN)
    case.call_and_validate(base_url=api_url, headers=headers, timeout=30, excluded_checks=excluded)
