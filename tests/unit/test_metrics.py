"""The metrics catalogue, the worker's counting and the API's collectors (no broker, no cache)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import Metrics
from availability import metrics as catalogue
from availability import topics
from availability.feed import Change
from availability.model import Position
from availability.netting import Posting
from availability.opstats import BucketCounts, WorkerTotals, merge
from availability.reservations import Hold
from availability.settings import load_settings
from availability.shard import Flush
from streams.metrics import WorkerMetrics

NAME = re.compile(r"^ats_(worker|api|erp)_[a-z][a-z0-9_]*[a-z0-9]$")


@pytest.mark.parametrize("metric", catalogue.CATALOGUE, ids=lambda m: m.name)
def test_names_follow_prometheus_conventions(metric: catalogue.Metric) -> None:
    assert NAME.match(metric.name)
    assert not metric.name.endswith("_total"), "counters are exposed with _total; the catalogue names the family"
    assert metric.help
    assert not metric.help.endswith(".")
    assert {"sku", "location", "location_id", "reservation_id"}.isdisjoint(metric.labels), "unbounded label"
    if metric.kind == "histogram":
        assert metric.buckets == tuple(sorted(metric.buckets))
    if "duration" in metric.name or "freshness" in metric.name:
        assert metric.name.endswith("_seconds"), "base unit in the name"
    assert metric.process == metric.name.split("_")[1] or metric.name.startswith("ats_erp_")


def test_names_are_unique() -> None:
    names = [m.name for m in catalogue.CATALOGUE]
    assert len(names) == len(set(names))


def scraped(registry: CollectorRegistry) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}


def test_the_api_exports_exactly_its_part_of_the_catalogue() -> None:
    families = scraped(Metrics().registry)
    assert set(families) == {m.name for m in catalogue.of_process("api")}
    for metric in catalogue.of_process("api"):
        assert families[metric.name].type == metric.kind
        assert families[metric.name].documentation == metric.help


def message(topic: str, partition: int, offset: int, timestamp: float) -> Any:
    """An input record as the worker takes it in (Kafka's timestamp: milliseconds)."""
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=round(timestamp * 1000))


def flush(cache: list[tuple[str, str, Position]], decisions: list[Hold] = (), postings: list[Posting] = ()) -> Flush:
    return Flush([], ("m|0", {}), cache, list(decisions), list(postings), [])


def hold(status: str) -> Hold:
    return Hold("R-1", "S-1", status, (("A", 1),), (), 0, 0)


@pytest.fixture
def worker() -> WorkerMetrics:
    return WorkerMetrics(load_settings({}), clock=lambda: 1_000.0)


def test_a_batch_counts_events_by_type_and_result_and_freshness_when_the_cache_was_written(
        worker: WorkerMetrics) -> None:
    dead = [(b"inventory.sales:0:11", orjson.dumps({"reason": "invalid_json"}))]
    events = [message(topics.SALES, 0, 10, 999.9), message(topics.SALES, 0, 11, 999.5),
              message(topics.RECEIPTS, 0, 3, 998.0), message(topics.ROUTED, 0, 7, 999.0)]
    with worker.cache_write():
        pass
    worker.batch(events, dead, {}, {}, 0.02)
    totals = worker.totals
    assert totals.events == {("sale", "applied"): 1, ("sale", "dead_letter"): 1, ("receipt", "applied"): 1}
    assert totals.dead_letters == {"invalid_json": 1}
    # written at 1000.0: ages 0.1, 0.5 and 2.0 s (the routed record is not an input)
    assert totals.freshness.count == 3
    assert totals.freshness.total == pytest.approx(2.6)
    worker.batch([message(topics.SALES, 0, 12, 999.9)], [], {}, {}, 0.01)  # wrote nothing to the cache
    assert totals.freshness.count == 3
    assert worker.batch_size.count == 2


def test_a_failed_cache_write_is_counted_and_raised(worker: WorkerMetrics) -> None:
    with pytest.raises(ConnectionError), worker.cache_write():
        raise ConnectionError("down")
    assert worker.totals.cache_write_errors == 1
    worker.batch([message(topics.SALES, 0, 1, 999.0)], [], {}, {}, 0.01)
    assert worker.totals.freshness.count == 0, "nothing reached the cache"


def test_events_of_a_batch_that_wrote_nothing_are_observed_at_the_next_write_unless_it_fails(
        worker: WorkerMetrics) -> None:
    worker.batch([message(topics.SALES, 0, 1, 999.0)], [], {}, {}, 0.01)  # behind: no write this batch
    with worker.cache_write():
        pass
    worker.batch([message(topics.SALES, 0, 2, 999.5)], [], {}, {}, 0.01)
    assert (worker.totals.freshness.count, worker.totals.freshness.total) == (2, pytest.approx(1.5))
    worker.batch([message(topics.SALES, 0, 3, 999.0)], [], {}, {}, 0.01)
    with pytest.raises(ConnectionError), worker.cache_write():  # the write that would carry it fails
        raise ConnectionError("down")
    with worker.cache_write():
        pass
    worker.batch([], [], {}, {}, 0.01)
    assert worker.totals.freshness.count == 2, "kept across a failed write, the list would grow for an outage"


def test_position_gauges_follow_the_latest_snapshot_of_each_position(worker: WorkerMetrics) -> None:
    worker.engine = SimpleNamespace(states={0: None, 1: None}, worker_id="w", lags=dict)  # type: ignore[assignment]
    worker.batch([], [], {0: flush([("A", "S-1", Position(on_hand=-2)), ("B", "S-1", Position(on_hand=1, reserved=3))],
                                   [hold("held"), hold("rejected")])}, {}, 0.01)
    assert worker.position_gauges() == (1, 1)
    worker.batch([], [], {0: flush([("A", "S-1", Position(on_hand=0)), ("B", "S-1", Position(on_hand=3, reserved=3))]),
                          1: flush([("C", "S-9", Position(on_hand=-1, reserved=1))])}, {}, 0.01)
    assert worker.position_gauges() == (1, 1)  # only C now, on partition 1
    worker.engine.states = {0: None}  # type: ignore[union-attr]  # partition 1 was revoked
    assert worker.position_gauges() == (0, 0)
    assert worker.totals.holds == {"held": 1, "rejected": 1}


def test_the_worker_exports_exactly_its_part_of_the_catalogue(worker: WorkerMetrics) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(worker)  # type: ignore[arg-type]
    posting = Posting("p1", "A", "S-1", "sale", -3, 0, 300_000, 1, 2)
    with worker.cache_write():
        pass
    worker.batch([message(topics.SALES, 0, 1, 999.0)], [], {0: flush([], [], [posting])}, {}, 0.01)
    families = scraped(registry)
    assert set(families) == {m.name for m in catalogue.of_process("worker")}
    for metric in catalogue.of_process("worker"):
        assert families[metric.name].type == metric.kind, metric.name
    postings = {s.name: s.value for s in families["ats_worker_erp_postings"].samples}
    assert postings == {"ats_worker_erp_postings_total": 1.0}
    units = [s.value for s in families["ats_worker_erp_posted_units"].samples]
    assert units == [3.0]
    freshness = {s.labels.get("le"): s.value for s in families["ats_worker_event_freshness_seconds"].samples
                 if s.name.endswith("_bucket")}
    assert (freshness["0.5"], freshness["1.0"], freshness["+Inf"]) == (0, 1, 1)


def test_bucket_counts_are_cumulative_like_prometheus() -> None:
    counts = BucketCounts((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        counts.observe(value)
    assert counts.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]


def test_merge_adds_workers_and_keeps_each_partitions_lag() -> None:
    one, two = WorkerTotals((1.0,)), WorkerTotals((1.0,))
    one.events[("sale", "applied")] = 5
    two.events[("sale", "applied")] = 2
    two.events[("sale", "dead_letter")] = 1
    one.dead_letters["invalid_json"] = 1
    two.dead_letters["invalid_json"] = 2
    one.freshness.observe(0.5)
    two.freshness.observe(3.0)
    merged = merge([
        one.snapshot(worker="a", at=1.0, partitions=[0], lag={"inventory.sales/0": 4}, negative_on_hand=1,
                     reserved_above_on_hand=0),
        two.snapshot(worker="b", at=1.0, partitions=[1], lag={"inventory.sales/1": 6}, negative_on_hand=2,
                     reserved_above_on_hand=1)])
    assert merged["events"] == {"sale": {"applied": 7, "dead_letter": 1}}
    assert merged["dead_letters"] == {"invalid_json": 3}
    assert merged["lag"] == {"total": 10, "partitions": {"inventory.sales/0": 4, "inventory.sales/1": 6}}
    assert merged["positions"] == {"negative_on_hand": 3, "reserved_above_on_hand": 1}
    assert merged["freshness"] == {"le": [1.0], "counts": [1, 1], "sum": 3.5}
    assert [w["worker"] for w in merged["workers"]] == ["a", "b"]


def test_the_readme_shows_the_catalogue_as_it_is() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert catalogue.markdown_table() in readme, "regenerate the README's table: python -m availability.metrics"


async def test_publishing_to_a_cache_that_does_not_answer_skips_the_snapshot(worker: WorkerMetrics) -> None:
    class DownCache:
        async def set(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("refused")

    worker.engine = SimpleNamespace(states={}, worker_id="w", lags=dict, cache=DownCache())  # type: ignore[assignment]
    await worker.publish()  # logged, not raised


def test_merge_adds_lateness_buckets_and_takes_snapshots_without_them() -> None:
    one, two = WorkerTotals((1.0,), (60.0,)), WorkerTotals((1.0,), (60.0,))
    one.lateness.observe(5.0)
    two.lateness.observe(7_200.0)  # a till two hours behind
    snapshots = [totals.snapshot(worker=name, at=1.0, partitions=[], lag={}, negative_on_hand=0,
                                 reserved_above_on_hand=0) for name, totals in (("a", one), ("b", two))]
    older = {key: value for key, value in snapshots[1].items() if key != "lateness"}  # a worker before this field
    assert merge(snapshots)["lateness"] == {"le": [60.0], "counts": [1, 1], "sum": 7_205.0}
    assert merge([snapshots[0], older])["lateness"] == {"le": [60.0], "counts": [1, 0], "sum": 5.0}


def test_change_feed_records_are_counted_by_kind(worker: WorkerMetrics) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(worker)  # type: ignore[arg-type]
    out = Change("c1", "A", "S-1", None, "out_of_stock", 0, 4, 1, 0, 0, ("e1",))
    low = out._replace(change_id="c2", channel="ecom", kind="low_stock", threshold=3)
    worker.batch([], [], {0: Flush([], ("m|0", {}), [], [], [], [out, low]), 1: Flush([], ("m|1", {}), [], [], [],
                                                                                    [out._replace(change_id="c3")])},
                 {}, 0.01)
    samples = {s.labels["kind"]: s.value for s in scraped(registry)["ats_worker_feed_changes"].samples}
    assert samples == {"out_of_stock": 2.0, "low_stock": 1.0}


def test_records_logged_at_error_are_counted_and_the_snapshot_says_the_rss(worker: WorkerMetrics) -> None:
    logger = logging.getLogger("test.counted")
    logger.propagate = False
    worker.count_errors(logger)
    logger.warning("not counted")
    logger.error("one")
    logger.critical("two")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(worker)  # type: ignore[arg-type]
    families = scraped(registry)
    assert [s.value for s in families["ats_worker_error_logs"].samples] == [2.0]
    assert next(s.value for s in families["ats_worker_resident_memory_bytes"].samples) > 10 * 2**20
    process = worker.snapshot()["process"]
    assert process["error_logs"] == 2
    assert process["rss_bytes"] > 10 * 2**20
    assert merge([worker.snapshot()])["workers"][0]["error_logs"] == 2
