"""The one catalogue of metrics: every name, type, help text and label set the worker and the API export.

Pure data (no ``prometheus_client`` here): ``streams.metrics`` and ``api.metrics`` build their collectors
from it, the Grafana dashboard and the Prometheus alerts in ``helm/ats`` may query only what it lists
(a unit test checks), and the README's metrics table is generated from it (:func:`markdown_table`).

Conventions (Prometheus'): ``ats_`` prefix, then the process (``worker``, ``api``; ``erp`` for the ERP
reconciliation); base units in the name (``_seconds``); counters are named without ``_total`` here and
exposed with it; labels have bounded values (event types, reasons, route templates, partitions; never
SKUs or locations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["counter", "gauge", "histogram"]
Process = Literal["worker", "api"]

#: seconds: sub-second is the target for event-to-cache freshness; minutes is an incident
FRESHNESS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
DURATION_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: seconds from business time to arrival: a till online is within seconds; one that was offline replays
#: its sales minutes to hours (a day) late
LATENESS_BUCKETS: Final = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86_400.0, 7 * 86_400.0)
BATCH_SIZE_BUCKETS: Final = (1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)

#: the series a histogram exposes besides its name
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    help: str
    process: Process
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def series(self) -> tuple[str, ...]:
        """The names a scrape shows (what PromQL can select)."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return tuple(self.name + suffix for suffix in _HISTOGRAM_SERIES)
        return (self.name,)


# ---- the worker (`ats worker`, served on ATS_WORKER_METRICS_PORT) --------------------------------------
WORKER_EVENTS: Final = Metric(
    "ats_worker_events", "counter",
    "input events the worker took in, by the event type of their topic and by result: applied, or dead_letter "
    "(refused with a reason); records replayed after a restart count again",
    "worker", ("type", "result"))
WORKER_DEAD_LETTERS: Final = Metric(
    "ats_worker_dead_letters", "counter", "records sent to inventory.dead-letter, by reason", "worker", ("reason",))
WORKER_CONSUMER_LAG: Final = Metric(
    "ats_worker_consumer_lag", "gauge",
    "records behind the high watermark, per input topic and partition this worker owns", "worker",
    ("topic", "partition"))
WORKER_PARTITIONS: Final = Metric(
    "ats_worker_partitions", "gauge", "partitions whose state this worker holds (owned and loaded)", "worker")
WORKER_FRESHNESS: Final = Metric(
    "ats_worker_event_freshness_seconds", "histogram",
    "from an input record's Kafka timestamp (when it was produced) to the cache write that included it",
    "worker", buckets=FRESHNESS_BUCKETS)
WORKER_HOLD_DECISIONS: Final = Metric(
    "ats_worker_hold_decisions", "counter",
    "reservation decisions published, by status (held, rejected, released, consumed, expired); a retried "
    "reservation id publishes its original decision again", "worker", ("status",))
WORKER_RESERVED_ABOVE_ON_HAND: Final = Metric(
    "ats_worker_positions_reserved_above_on_hand", "gauge",
    "positions whose live holds reserve more than is on hand (holds at risk: sold or counted away under them)",
    "worker")
WORKER_NEGATIVE_ON_HAND: Final = Metric(
    "ats_worker_positions_negative_on_hand", "gauge",
    "positions whose on_hand is below 0 (sold more than the books hold: a missing receipt or count)", "worker")
WORKER_POSITIONS: Final = Metric(
    "ats_worker_positions", "gauge", "positions (SKU, location) held by this worker", "worker")
WORKER_LATENESS: Final = Metric(
    "ats_worker_event_lateness_seconds", "histogram",
    "from an input event's business time (occurred_at) to its arrival (the record's Kafka timestamp); a store "
    "whose offline till catches up shows as a burst in the upper buckets (0 for events stamped in the future)",
    "worker", buckets=LATENESS_BUCKETS)
WORKER_SILENT_LOCATIONS: Final = Metric(
    "ats_worker_silent_locations", "gauge",
    "locations owned by this worker that are trading and whose events stopped arriving longer than "
    "ATS_SILENT_AFTER_SECONDS of trading time ago (GET /v1/locations/silent lists them)", "worker")
WORKER_ERP_POSTINGS: Final = Metric(
    "ats_worker_erp_postings", "counter", "ERP postings decided (closed windows), by movement type", "worker",
    ("movement_type",))
WORKER_ERP_UNITS: Final = Metric(
    "ats_worker_erp_posted_units", "counter", "sum of |qty| of the ERP postings decided, by movement type",
    "worker", ("movement_type",))
WORKER_FEED_CHANGES: Final = Metric(
    "ats_worker_feed_changes", "counter",
    "change feed records decided (crossings of a threshold, for inventory.availability), by kind", "worker",
    ("kind",))
WORKER_CACHE_WRITE_ERRORS: Final = Metric(
    "ats_worker_cache_write_errors", "counter", "cache (Redis) snapshot writes that failed", "worker")
WORKER_ERROR_LOGS: Final = Metric(
    "ats_worker_error_logs", "counter", "records the worker logged at ERROR or above (a soak expects none)",
    "worker")
WORKER_RSS: Final = Metric(
    "ats_worker_resident_memory_bytes", "gauge", "the worker process's resident memory (RSS)", "worker")
WORKER_CACHE_WRITE_DURATION: Final = Metric(
    "ats_worker_cache_write_duration_seconds", "histogram",
    "one pipelined cache write of a batch (positions, location index, decisions)", "worker",
    buckets=DURATION_BUCKETS)
WORKER_BATCH_DURATION: Final = Metric(
    "ats_worker_batch_duration_seconds", "histogram",
    "one batch from apply to the end of its flush (outputs, cache, changelog, postings)", "worker",
    buckets=DURATION_BUCKETS)
WORKER_BATCH_SIZE: Final = Metric(
    "ats_worker_batch_events", "histogram",
    "records per batch the worker handles (a batch with reservations counts as two: those, then the rest)", "worker",
    buckets=BATCH_SIZE_BUCKETS)

# ---- the API (`ats api`, GET /metrics) ----------------------------------------------------------------
API_REQUESTS: Final = Metric(
    "ats_api_requests", "counter", "HTTP requests by route template, method and status", "api",
    ("route", "method", "status"))
API_LATENCY: Final = Metric(
    "ats_api_request_duration_seconds", "histogram", "HTTP request latency by route template, method and status",
    "api", ("route", "method", "status"), DURATION_BUCKETS)
API_CACHE_ERRORS: Final = Metric(
    "ats_api_cache_errors", "counter", "cache (Redis) operations that failed", "api", ("operation",))
API_ANSWERS: Final = Metric(
    "ats_api_answers", "counter",
    "availability answers (one per SKU) by source: kept (in the API's memory), read (from the cache, then kept), "
    "direct (from the cache: kept answers not served while unsubscribed or a cache epoch is missing)", "api",
    ("source",))
API_BROKER_ERRORS: Final = Metric(
    "ats_api_broker_errors", "counter", "produce calls that failed", "api", ("operation",))
API_RESERVATIONS: Final = Metric(
    "ats_api_reservation_outcomes", "counter",
    "reservation requests by outcome (held, rejected, released, consumed, expired, timeout, unavailable)", "api",
    ("action", "outcome"))
API_INGESTED: Final = Metric(
    "ats_api_events_ingested", "counter", "events accepted by POST /v1/events and produced, by type", "api",
    ("type",))
API_INGEST_REJECTED: Final = Metric(
    "ats_api_events_rejected", "counter", "events refused by POST /v1/events, by reason", "api", ("reason",))
ERP_DRIFT_POSITIONS: Final = Metric(
    "ats_erp_drift_positions", "gauge",
    "positions whose engine on_hand differs from the posted ERP book (refreshed every ATS_DRIFT_REFRESH_SECONDS "
    "and at each GET /v1/erp/drift)", "api")
ERP_DRIFT_UNITS: Final = Metric(
    "ats_erp_drift_units", "gauge", "sum of |engine on_hand - ERP book on_hand| over the posted book", "api")
ERP_DRIFT_CHECKED: Final = Metric(
    "ats_erp_drift_checked_timestamp_seconds", "gauge",
    "when the drift gauges were last computed (0: no ERP book posted yet)", "api")

CATALOGUE: Final[tuple[Metric, ...]] = (
    WORKER_EVENTS, WORKER_DEAD_LETTERS, WORKER_CONSUMER_LAG, WORKER_PARTITIONS, WORKER_FRESHNESS,
    WORKER_HOLD_DECISIONS, WORKER_RESERVED_ABOVE_ON_HAND, WORKER_NEGATIVE_ON_HAND, WORKER_POSITIONS,
    WORKER_LATENESS, WORKER_SILENT_LOCATIONS,
    WORKER_ERP_POSTINGS, WORKER_ERP_UNITS, WORKER_FEED_CHANGES, WORKER_CACHE_WRITE_ERRORS, WORKER_CACHE_WRITE_DURATION,
    WORKER_BATCH_DURATION, WORKER_BATCH_SIZE, WORKER_ERROR_LOGS, WORKER_RSS,
    API_REQUESTS, API_LATENCY, API_CACHE_ERRORS, API_ANSWERS, API_BROKER_ERRORS, API_RESERVATIONS, API_INGESTED,
    API_INGEST_REJECTED, ERP_DRIFT_POSITIONS, ERP_DRIFT_UNITS, ERP_DRIFT_CHECKED,
)


def of_process(process: Process) -> tuple[Metric, ...]:
    return tuple(metric for metric in CATALOGUE if metric.process == process)


def series_names() -> frozenset[str]:
    """Every series name a scrape of the worker or the API can show."""
    return frozenset(name for metric in CATALOGUE for name in metric.series)


def markdown_table() -> str:
    """The README's metrics table (``python -m availability.metrics`` prints it)."""
    rows = ["| metric | type | labels | process | what |", "|---|---|---|---|---|"]
    for metric in CATALOGUE:
        name = metric.series[0] if metric.kind == "counter" else metric.name
        labels = ", ".join(f"`{label}`" for label in metric.labels) or "—"
        rows.append(f"| `{name}` | {metric.kind} | {labels} | {metric.process} | {metric.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
