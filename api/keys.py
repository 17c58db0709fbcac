"""Typed application keys: what the app factory puts in the app (no singletons)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from availability.channels import ChannelViews
from availability.settings import Settings
from cacheclient import Cache

if TYPE_CHECKING:
    from .answercache import AnswerCache
    from .broker import Broker
    from .decisions import Decisions
    from .erp import DriftStatus
    from .metrics import Metrics
    from .routes import Route

SETTINGS = web.AppKey("settings", Settings)
#: the cache client (a single Redis or a Redis Cluster: :mod:`cacheclient`)
CACHE: web.AppKey[Cache] = web.AppKey("cache")
BROKER: web.AppKey[Broker] = web.AppKey("broker")
DECISIONS: web.AppKey[Decisions] = web.AppKey("decisions")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: the last ERP drift computed (by GET /v1/erp/drift or the background refresh)
DRIFT: web.AppKey[DriftStatus] = web.AppKey("drift")
CHANNELS = web.AppKey("channels", ChannelViews)
#: token → scopes, parsed once from the settings
TOKENS: web.AppKey[dict[str, frozenset[str]]] = web.AppKey("tokens")
#: each registered route → its entry of the one routes table (scope, parameters, schemas)
ROUTE_SPECS: web.AppKey[dict[AbstractRoute, Route]] = web.AppKey("route_specs")
#: the API's wall clock (seconds since the epoch); injected so tests can pin it
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
#: per request: the id every response carries as X-Request-Id (api.edge)
REQUEST_ID = web.RequestKey("request_id", str)
#: the answers this process keeps between the workers' change messages
ANSWERS: web.AppKey[AnswerCache] = web.AppKey("answers")
#: the OpenAPI document, generated once by the factory from the routes table
SPEC: web.AppKey[dict[str, object]] = web.AppKey("spec")
