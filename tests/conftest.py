"""Session fixtures: one real broker and one real cache for the whole run.

Order of preference: ``ATS_TEST_BROKER_URL`` / ``ATS_TEST_REDIS_URL`` from the environment, then
``ATS_TEST_BROKER=kafka`` (a local Apache Kafka, :mod:`tests.brokers`), then testcontainers when a Docker
engine answers, then the embedded servers from Python packages. A fixture that cannot start its server
**fails** the tests that need it; it never skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import embedded
from tests import brokers
from tests.rediscluster import CacheCluster, start_cache_cluster


def _docker_answers() -> bool:
    if not Path("/var/run/docker.sock").exists() and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker_url(services_dir: Path) -> Iterator[str]:
    if url := os.environ.get("ATS_TEST_BROKER_URL"):
        yield url
        return
    try:
        if brokers.kind() == "embedded" and _docker_answers():
            from testcontainers.kafka import KafkaContainer

            with KafkaContainer() as kafka:
                yield "kafka://" + kafka.get_bootstrap_server()
            return
        server = brokers.start_test_broker(services_dir / "broker")
    except Exception as exc:
        pytest.fail(f"could not start a broker for the tests: {exc!r}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    if url := os.environ.get("ATS_TEST_REDIS_URL"):
        yield url
        return
    try:
        if _docker_answers():
            from testcontainers.redis import RedisContainer

            with RedisContainer() as container:
                yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
            return
        server = embedded.start_cache(services_dir / "cache")
    except Exception as exc:
        pytest.fail(f"could not start a cache for the tests: {exc!r}")
    try:
        yield server.url
    finally:
        server.stop()




@pytest.fixture(scope="session")
def redis_cluster(services_dir: Path) -> Iterator[CacheCluster]:
    """A real Redis Cluster: three Valkey masters formed into one (:mod:`tests.rediscluster`)."""
    try:
        cluster = start_cache_cluster(services_dir / "cache-cluster")
    except Exception as exc:
        pytest.fail(f"could not start a Redis Cluster for the tests: {exc!r}")
    try:
        yield cluster
    finally:
        cluster.stop()
