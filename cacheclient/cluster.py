"""The Redis Cluster client: the cache protocol's two cross-node rules, kept in one place.

**Order across nodes.** On a single Redis a pipeline runs in the order it was queued. A cluster
pipeline sends each node its own commands (in order) and the nodes run them *at the same time*, so a
command queued after another that lives on another node may run before it. The cache protocol needs:

* an **announcement** (``PUBLISH`` on ``ats:v1:changed`` / ``ats:v1:decisions``) must not reach a
  subscriber before what it announces is written: an API that drops its kept answers on a change
  message and reads again at once would read, and keep, the old positions;
* the **cache epochs** (:data:`availability.topics.CACHE_EPOCHS_KEY`) vouch that the positions written
  or read before them are whole: written before the positions of a whole snapshot land on other
  nodes, a reader would take a not-yet-rewritten (empty) position for a real zero; read before the
  positions, a ``FLUSHALL`` in between would do the same.

So :class:`StagedPipeline` runs a pipeline in two stages: every other command first (per node, in
parallel, as redis-py does), then, once all of them are acknowledged, the announcements and the epochs
commands. Results come back in the order queued. The second stage costs one more round trip, on a
cluster only: a single Redis keeps its plain pipeline. ``PUBLISH`` is refused in redis-py's cluster
pipelines (it names no key); here it goes with the second stage to any node, and the cluster bus
forwards it to every subscriber.

**Data lost on one node.** A master that restarts empty (no persistence, back before a failover), or
a ``FLUSHALL`` sent to one node, loses the positions of its slots only. One epochs hash on one node
would not see it, and the API would answer zeros for those SKUs from then on. So on a cluster the
epochs hash is one *logical* key with a copy on every master that owns slots:
``ats:v1:cache-epochs:{<tag>}``, the hash tag chosen so the copy lands on that master (the first of
``e0``, ``e1``, … whose slot the master owns, so every process derives the same copies from the same
slot map). Every command on :data:`~availability.topics.CACHE_EPOCHS_KEY` is sent to every copy
(:class:`Cluster` and :class:`StagedPipeline` do it, so the engine and the API name the one key as on a
single Redis); a read merges them: a field is present only if every copy has it, its value all the
copies' values joined (so a copy rewritten alone reads as a change). A resharding that moves the slot
a copy lives on makes new copies, missing at first: the API answers 503 and the workers write every
partition whole once, as after any loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from availability import topics

EPOCHS_KEYS = frozenset({topics.CACHE_EPOCHS_KEY, topics.CACHE_EPOCHS_KEY.encode()})
#: tags tried for the epochs copies before giving up (3 masters need ~5; 1,000 masters ~7,500)
MAX_TAGS = 1_000_000


def _command(args: Sequence[Any]) -> str:
    return (args[0] if isinstance(args[0], str) else bytes(args[0]).decode()).upper()


def on_epochs(args: Sequence[Any]) -> bool:
    """Whether a command names the cache epochs hash (as its only key: every epochs command does)."""
    return len(args) > 1 and isinstance(args[1], str | bytes) and args[1] in EPOCHS_KEYS


def runs_last(args: Sequence[Any]) -> bool:
    """Whether a queued command belongs to a pipeline's second stage: an announcement, or an epochs command."""
    return _command(args) == "PUBLISH" or on_epochs(args)


def copy_key(tag: str) -> str:
    return f"{topics.CACHE_EPOCHS_KEY}:{{{tag}}}"


Command = tuple[tuple[Any, ...], dict[str, Any]]  # a command's arguments and options


def fan_out(args: Sequence[Any], kwargs: dict[str, Any], keys: list[str]) -> list[Command]:
    """An epochs command as one command per copy."""
    return [((args[0], key, *args[2:]), {**kwargs, "keys": [key]} if "keys" in kwargs else kwargs) for key in keys]


def merge(command: Any, results: list[Any]) -> Any:
    """The copies' answers to one epochs command as one answer (see the module's docstring)."""
    name = _command([command])
    if name == "HMGET":
        return [None if None in values else _joined(values) for values in zip(*results, strict=True)]
    if name == "HGETALL":
        common = set(results[0]).intersection(*results[1:])
        return {field: _joined([result[field] for result in results]) for field in results[0] if field in common}
    if name == "HGET":
        return None if None in results else _joined(results)
    if name in {"HSET", "HDEL", "DEL", "UNLINK", "EXPIRE", "PERSIST"}:
        return results[0]  # written to every copy; the first copy's answer
    raise RedisClusterException(f"{name} on {topics.CACHE_EPOCHS_KEY} is not spread over its copies on a cluster")


def _joined(values: Sequence[Any]) -> Any:
    return values[0] if len(set(values)) == 1 else (b"|" if isinstance(values[0], bytes) else "|").join(values)


class Cluster(RedisCluster):
    """``redis.asyncio.cluster.RedisCluster`` with :class:`StagedPipeline` pipelines and the epochs hash
    copied on every master."""

    _epoch_tags: dict[str, tuple[str, int]] | None = None  # master name → (tag, slot) of its epochs copy
    _epoch_slot_map: object = None  # the slot map the tags were chosen for

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> StagedPipeline:
        if transaction or shard_hint:  # as redis-py's: a cluster pipeline is no transaction
            raise RedisClusterException("a Redis Cluster pipeline is never a transaction (transaction=False)")
        return StagedPipeline(self)  # type: ignore[abstract]  # redis-py declares what it sets at run time

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not on_epochs(args):
            return await super().execute_command(*args, **kwargs)
        await self.initialize()  # returns at once once the slot map is known
        copies = fan_out(args, kwargs, self.epoch_copies())
        run = super().execute_command
        return merge(args[0], list(await asyncio.gather(*(run(*each, **kw) for each, kw in copies))))

    def epoch_copies(self) -> list[str]:
        """The keys of the epochs copies for the slot map this client knows (initialized). Chosen again
        when redis-py loads a new slot map, or a copy's slot moved (a redirection updates the map in place)."""
        slots = self.nodes_manager.slots_cache
        tags = self._epoch_tags
        if tags is None or slots is not self._epoch_slot_map or any(
                not slots.get(slot) or slots[slot][0].name != name for name, (_, slot) in tags.items()):
            tags = self._epoch_tags = _choose_tags(slots)
            self._epoch_slot_map = slots
        return [copy_key(tag) for _, (tag, _) in sorted(tags.items())]


def _choose_tags(slots: dict[int, list[Any]]) -> dict[str, tuple[str, int]]:
    """For every master that owns a slot, the first tag ``e<i>`` whose slot it owns."""
    owners = {nodes[0].name for nodes in slots.values() if nodes}
    tags: dict[str, tuple[str, int]] = {}
    for i in range(MAX_TAGS):
        if len(tags) == len(owners):
            return tags
        tag = f"e{i}"
        slot = key_slot(tag.encode())
        nodes = slots.get(slot)
        if nodes and nodes[0].name not in tags:
            tags[nodes[0].name] = (tag, slot)
    raise RedisClusterException(f"no epochs tag found for every master within {MAX_TAGS} tags")


class StagedPipeline(ClusterPipeline):
    """A cluster pipeline in two stages: the announcements and epochs commands after everything else."""

    def __init__(self, client: Cluster) -> None:
        super().__init__(client)
        self._client = client
        self._stages: list[bool] = []  # per queued command: whether it runs in the second stage
        self._later: list[Command] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> StagedPipeline:
        later = runs_last(args)
        if later:
            self._later.append((args, kwargs))
        else:
            super().execute_command(*args, **kwargs)
        self._stages.append(later)
        return self

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> StagedPipeline:  # type: ignore[override]
        return self.execute_command("PUBLISH", channel, message, **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """The first stage, then (only if it raised nothing) the second; results in the order queued."""
        stages, later = self._stages, self._later
        self._stages, self._later = [], []
        first = await super().execute(raise_on_error, allow_redirections) if not all(stages) else []
        second = await self._second_stage(later, raise_on_error, allow_redirections) if later else []
        firsts, seconds = iter(first), iter(second)
        return [next(seconds) if stage else next(firsts) for stage in stages]

    async def _second_stage(self, commands: list[Command], raise_on_error: bool,
                            allow_redirections: bool) -> list[Any]:
        await self._client.initialize()  # known after a first stage; not if there was none
        copies = self._client.epoch_copies()
        pipe = ClusterPipeline(self._client)  # type: ignore[abstract]
        sizes = []
        for args, kwargs in commands:
            each = fan_out(args, kwargs, copies) if on_epochs(args) else [(args, kwargs)]
            for command, options in each:
                pipe.execute_command(*command, **options)
            sizes.append(len(each))
        results = await pipe.execute(raise_on_error, allow_redirections)
        answers, at = [], 0
        for (args, _), size in zip(commands, sizes, strict=True):
            chunk, at = results[at:at + size], at + size
            answers.append(merge(args[0], chunk) if on_epochs(args) else chunk[0])
        return answers
