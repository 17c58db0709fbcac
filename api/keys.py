"""Typed application keys: what the app factory puts in the app (no singletons)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis

from availability.settings import Settings

if TYPE_CHECKING:
    from .broker import Broker

SETTINGS = web.AppKey("settings", Settings)
CACHE = web.AppKey("cache", Redis)
BROKER: web.AppKey[Broker] = web.AppKey("broker")
