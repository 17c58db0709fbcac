"""``ats worker``: one stream worker process."""

from __future__ import annotations

import asyncio
import gc
import logging

import faust

from availability.settings import Settings

from . import logthrottle
from .admin import ensure_topics
from .app import create_faust_app
from .engine import Engine
from .metrics import WorkerMetrics

_FAUST_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}


class Worker(faust.Worker):
    """Faust's worker with the root logger set to the configured level.

    Faust leaves the root logger at DEBUG and filters in the handler: every debug record is built and
    then dropped, about 8% of a worker's time.
    """

    #: counts the records logged at ERROR (set before the worker starts)
    metrics: WorkerMetrics | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        logger.setLevel(level or logging.INFO)
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(level or logging.INFO, logging.INFO))
        logthrottle.install(logger)  # a broker outage: one line per kind of library error per 30 s
        if self.metrics is not None:
            self.metrics.count_errors(logger)


def build(settings: Settings, *, store: str | None = None) -> tuple[faust.App, Engine]:
    app = create_faust_app(settings, store=store)
    metrics = WorkerMetrics(settings)
    engine = Engine(app, settings, metrics=metrics)
    metrics.attach(app, engine)
    return app, engine


#: the cyclic garbage collector's thresholds in the worker. Its state is hundreds of thousands of
#: positions (NamedTuples, which the collector keeps scanning), each replaced on every line: with the
#: defaults (700, 10, 10) the cost per line grew with the state (in process, 400k envelope lines: each
#: further 100k took 1.5, 1.9, 2.4, 2.9 s; with these 1.0, 1.4, 1.6, 1.6 s). The state holds no cycles.
GC_THRESHOLDS = (100_000, 50, 100)


def run_worker(settings: Settings) -> None:
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(ensure_topics(settings))
    app, engine = build(settings)
    worker = Worker(app, loglevel=_FAUST_LEVELS[settings.log_level], quiet=True)
    worker.metrics = engine.metrics
    gc.freeze()  # the modules and the app, built once: no full collection scans them again (as the API does)
    worker.execute_from_commandline()
