"""A Redis Cluster client whose pipelines keep the one order the product relies on across nodes.

On a single Redis a pipeline runs in the order it was queued. A cluster pipeline sends each node its
own commands (in order) and the nodes run them **at the same time**, so a command queued after
another that lives on another node may run before it. The cache protocol needs two orders:

* an **announcement** (``PUBLISH`` on ``ats:v1:changed`` / ``ats:v1:decisions``) must not reach a
  subscriber before what it announces is written: an API that drops its kept answers on a change
  message and reads again at once would read, and keep, the old positions;
* the **cache epochs** (:data:`availability.topics.CACHE_EPOCHS_KEY`) vouch that the positions written
  or read before them are whole: written before the positions of a whole snapshot land on other
  nodes, a reader would take a not-yet-rewritten (empty) position for a real zero; read before the
  positions, a ``FLUSHALL`` in between would do the same.

So :class:`StagedPipeline` runs a pipeline in two stages: every other command first (per node, in
parallel, as redis-py does), then, once all of them are acknowledged, the announcements and the epoch
commands. Results come back in the order queued. The second stage costs one more round trip, on a
cluster only: a single Redis keeps its plain pipeline. ``PUBLISH`` is refused in redis-py's cluster
pipelines (it names no key); here it is queued with the second stage and routed to any node, which
the cluster bus forwards to every subscriber.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException

from availability import topics

#: keys whose commands run after the others of their pipeline (see the module's docstring)
LAST_KEYS = frozenset({topics.CACHE_EPOCHS_KEY, topics.CACHE_EPOCHS_KEY.encode()})


def runs_last(args: tuple[Any, ...]) -> bool:
    """Whether a queued command belongs to the second stage: an announcement, or an epochs command."""
    command = args[0].upper() if isinstance(args[0], str) else bytes(args[0]).decode().upper()
    return command == "PUBLISH" or (len(args) > 1 and args[1] in LAST_KEYS)


class Cluster(RedisCluster):
    """``redis.asyncio.cluster.RedisCluster`` with :class:`StagedPipeline` pipelines."""

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> StagedPipeline:
        if transaction or shard_hint:  # as redis-py's: a cluster pipeline is no transaction
            raise RedisClusterException("a Redis Cluster pipeline is never a transaction (transaction=False)")
        return StagedPipeline(self)  # type: ignore[abstract]  # redis-py declares what it sets at run time


class StagedPipeline(ClusterPipeline):
    """A cluster pipeline in two stages: the announcements and epoch commands after everything else."""

    def __init__(self, client: RedisCluster) -> None:
        super().__init__(client)
        self._client = client
        self._later = ClusterPipeline(client)  # type: ignore[abstract]
        self._stages: list[bool] = []  # per queued command: whether it runs in the second stage

    def execute_command(self, *args: Any, **kwargs: Any) -> StagedPipeline:
        later = runs_last(args)
        if later:
            self._later.execute_command(*args, **kwargs)
        else:
            super().execute_command(*args, **kwargs)
        self._stages.append(later)
        return self

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> StagedPipeline:  # type: ignore[override]
        return self.execute_command("PUBLISH", channel, message, **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """The first stage, then (only if it raised nothing) the second; results in the order queued."""
        stages, self._stages = self._stages, []
        later, self._later = self._later, ClusterPipeline(self._client)  # type: ignore[abstract]  # the first stage's reset spares it
        try:
            first = await super().execute(raise_on_error, allow_redirections) if not all(stages) else []
            second = await later.execute(raise_on_error, allow_redirections) if any(stages) else []
        finally:
            await later.reset()  # type: ignore[no-untyped-call]
        firsts, seconds = iter(first), iter(second)
        return [next(seconds) if stage else next(firsts) for stage in stages]
