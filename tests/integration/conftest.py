from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from availability import topics
from availability.routing import owner_partition
from streams.admin import ensure_topics
from streams.embedded import free_port
from tests.brokers import start_test_broker
from tests.builders import receipt, ref

from .cluster import Cluster, eventually

#: seconds an async test keeps of its ``timeout`` mark to fail by itself, before pytest-timeout steps in
OWN_DEADLINE_MARGIN = 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every async test with a ``timeout`` mark a deadline of its own, a little shorter.

    pytest-timeout, when it fires, shows only the event loop waiting in ``select``; a test cancelled by
    its own deadline fails with the traceback of the step it was waiting on (and its ``finally`` runs:
    workers are stopped, their logs kept)."""
    for item in items:
        marker = item.get_closest_marker("timeout")
        test = getattr(item, "obj", None)
        if marker and marker.args and inspect.iscoroutinefunction(test):
            item.obj = _within(test, max(marker.args[0] - OWN_DEADLINE_MARGIN, marker.args[0] / 2))  # type: ignore[attr-defined]


def _within(test: Callable[..., Awaitable[Any]], seconds: float) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            raise AssertionError(f"the test did not finish within {seconds:.0f} s: the step it was waiting on "
                                 "is in the traceback above") from exc

    return bounded


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of this module's own (its topics get this module's partition count)."""
    if url := os.environ.get("ATS_TEST_BROKER_URL"):
        yield url
        return
    try:
        server = start_test_broker(tmp_path_factory.mktemp("broker"))
    except Exception as exc:
        pytest.fail(f"could not start a broker: {exc!r}")
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def metrics_port() -> int:
    """A port for a module's worker to serve /metrics on (workers of other modules serve none)."""
    return free_port()


@pytest.fixture(scope="module")
async def engine(module_broker: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
                 ) -> AsyncIterator[Cluster]:
    """One running worker (8 partitions) for a module's tests; tests use fresh SKUs and locations."""
    async with running(Cluster(module_broker, redis_url, tmp_path_factory.mktemp("engine"), partitions=8)) as cluster:
        yield cluster


@asynccontextmanager
async def running(cluster: Cluster) -> AsyncIterator[Cluster]:
    """The cluster's topics created and one worker ready; everything stopped on the way out."""
    await ensure_topics(cluster.settings)
    cluster.start_worker()
    try:
        await ready(cluster)
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own (it chooses the partition count; it may kill workers)."""
    try:
        server = start_test_broker(tmp_path / "broker")
    except Exception as exc:
        pytest.fail(f"could not start a broker: {exc!r}")
    yield server.url
    server.stop()


async def ready(cluster: Cluster, timeout: float = 90) -> None:
    """A probe receipt shows up in the cache: the worker has joined, recovered and is applying; and the
    cache epoch of every partition is written (the API answers 503 for a partition whose epoch is missing,
    and a worker writes each partition's with its first flush of that partition, up to a tick later)."""
    probe_location, probe_sku = ref("probe"), ref("SKU")
    await cluster.send(topics.RECEIPTS, receipt(probe_location, (probe_sku, 1)))
    await eventually(lambda: cluster.position(probe_sku, probe_location), timeout=timeout, what="worker ready")
    fields = [str(partition) for partition in range(cluster.settings.partitions)]

    async def vouched() -> bool:
        return None not in await cluster.cache.hmget(topics.CACHE_EPOCHS_KEY, fields)

    await eventually(vouched, timeout=timeout, what="every partition's cache epoch")


def locations_on_distinct_partitions(partitions: int) -> Callable[[], tuple[str, str]]:
    def pick() -> tuple[str, str]:
        first = ref("S")
        while True:
            second = ref("S")
            if owner_partition(second, partitions) != owner_partition(first, partitions):
                return first, second
    return pick


@pytest.fixture
def two_partitions_apart() -> tuple[str, str]:
    return locations_on_distinct_partitions(8)()

