"""Every Redis client of the product, built in one place: a single Redis, or a Redis Cluster.

``ATS_REDIS_CLUSTER=true`` makes :func:`connect` (asyncio: the worker, the API, the simulator) and
:func:`connect_sync` (the CLI's checks and ``ats erp reconcile``) build a cluster client seeded by the
node ``ATS_REDIS_URL`` names; otherwise a plain client. Both take their TLS and password from
:func:`availability.connections.redis_options`, and the caller's timeouts.

What the product asks of Redis stays the same on a cluster (the key layout is in the README, "The
cache"): every command names one key; pipelines are per node (:mod:`cacheclient.cluster` keeps their
order where it matters, and keeps a copy of the cache epochs on every master); ``PUBLISH``/``SUBSCRIBE`` reach every
node of a Redis 7 cluster, so a subscriber listens on one node (redis-py's ``ClusterPubSub`` picks the
node of the channel's slot); ``SCAN`` runs on every primary. An adapter imports this package, never
``redis.asyncio.Redis.from_url`` itself.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from availability.connections import redis_options
from availability.settings import Settings

from .cluster import Cluster
from .packing import packing_class

#: an asyncio client of the cache, whichever kind the settings ask for
Cache = Redis | RedisCluster
#: a blocking client of the cache (CLI)
SyncCache = redis.Redis | redis.cluster.RedisCluster
#: what a cache call raises when Redis does not answer: the cluster client raises its own family too
#: (``RedisClusterUnreachableError`` when no node answers), which is no ``RedisError``
CacheErrors = (RedisError, RedisClusterException, OSError, TimeoutError)

__all__ = ["Cache", "CacheErrors", "Cluster", "SyncCache", "connect", "connect_sync", "connect_url"]


def connect(settings: Settings, **options: Any) -> Cache:
    """The asyncio client for ``ATS_REDIS_URL`` (``options``: timeouts, retry). Connects lazily."""
    return connect_url(settings.redis_url or "", cluster=settings.redis_cluster,
                       **redis_options(settings), **options)


def connect_url(url: str, *, cluster: bool, **options: Any) -> Cache:
    """The asyncio client for ``url``: a :class:`Cluster` seeded by that node, or a plain :class:`Redis`
    whose connections pack commands with hiredis in one call (:mod:`cacheclient.packing`)."""
    if cluster:
        return Cluster.from_url(url, **options)
    client = Redis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = packing_class(pool.connection_class)  # TCP, TLS or a Unix socket, as the URL says
    return client


def connect_sync(settings: Settings, **options: Any) -> SyncCache:
    """The blocking client for ``ATS_REDIS_URL``. A cluster client asks its seed node for the slot map
    here, so it raises ``redis.exceptions.RedisClusterException`` when no node answers."""
    url, options = settings.redis_url or "", {**redis_options(settings), **options}
    if settings.redis_cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)
