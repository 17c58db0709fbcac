"""Which client the settings build (no I/O: clients connect lazily)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import DataError, RedisClusterException, RedisClusterUnreachableError

import cacheclient
from availability.settings import load_settings
from cacheclient.cluster import StagedPipeline
from cacheclient.packing import WholeCommandPacker, packing_class


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


COMMANDS = [
    ("HSET", "ats:v1:pos:{SKU-1}", "S-1", b'{"on_hand":3}', "S-2", b"\xff\x00"),
    ("SET", "k", 1.5), ("SET", "k", 1 / 3), ("SET", "k", 1e20), ("SET", "k", -3), ("SET", "k", "é"),
    ("SET", "k", memoryview(b"ab")), ("ZADD", "idx", 0, "SKU-1", -7, "SKU-2"), ("EXPIRE", "k", 2**40),
    ("CLIENT SETINFO", "LIB-NAME", "redis-py"), (b"CONFIG GET", "maxmemory"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(map(str, command[:2])))
async def test_commands_are_packed_by_hiredis_to_the_same_bytes_as_redis_py(command: tuple[object, ...]) -> None:
    cache = cacheclient.connect(load_settings({"ATS_REDIS_URL": "redis://127.0.0.1:1/0"}))
    connection = cache.connection_pool.make_connection()
    assert isinstance(connection._command_packer, WholeCommandPacker)  # an upgrade that renames it fails here
    stock = type(connection).__mro__[1](**cache.connection_pool.connection_kwargs)
    assert b"".join(connection.pack_command(*command)) == b"".join(stock.pack_command(*command))
    await cache.aclose()


async def test_what_redis_py_refuses_is_still_refused() -> None:
    cache = cacheclient.connect(load_settings({"ATS_REDIS_URL": "redis://127.0.0.1:1/0"}))
    connection = cache.connection_pool.make_connection()
    with pytest.raises(DataError):
        connection.pack_command("SET", "k", True)
    await cache.aclose()


def test_the_packing_class_is_made_once_per_connection_class() -> None:
    assert packing_class(Connection) is packing_class(Connection) is packing_class(packing_class(Connection))
    assert packing_class(SSLConnection) is not packing_class(Connection)
    assert issubclass(packing_class(SSLConnection), SSLConnection)


async def test_a_tls_url_keeps_its_tls_connections() -> None:
    cache = cacheclient.connect(load_settings({"ATS_REDIS_URL": "rediss://127.0.0.1:1/0"}))
    assert issubclass(cache.connection_pool.connection_class, SSLConnection)
    await cache.aclose()
