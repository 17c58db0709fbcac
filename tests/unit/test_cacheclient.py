"""Which client the settings build (no I/O: clients connect lazily)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisClusterUnreachableError

import cacheclient
from availability.settings import load_settings
from cacheclient.cluster import StagedPipeline


async def test_a_single_redis_keeps_its_plain_client_and_pipeline() -> None:
    cache = cacheclient.connect(load_settings({"ATS_REDIS_URL": "redis://127.0.0.1:1/0"}))
    assert type(cache) is Redis
    assert type(cache.pipeline(transaction=False)) is not StagedPipeline
    await cache.aclose()


async def test_a_cluster_gets_the_cluster_client_with_staged_pipelines() -> None:
    settings = load_settings({"ATS_REDIS_URL": "redis://127.0.0.1:1", "ATS_REDIS_CLUSTER": "true"})
    cache = cacheclient.connect(settings, socket_timeout=2.0)
    assert isinstance(cache, cacheclient.Cluster)
    assert isinstance(cache.pipeline(transaction=False), StagedPipeline)
    with pytest.raises(RedisClusterException, match="never a transaction"):
        cache.pipeline(transaction=True)
    await cache.aclose()


def test_the_cluster_clients_own_errors_are_cache_errors() -> None:
    """``RedisClusterUnreachableError`` is no ``RedisError``: caught as one, a cluster outage is a 503 and a
    logged failed write, not a crashed worker."""
    assert issubclass(RedisClusterUnreachableError, cacheclient.CacheErrors)
