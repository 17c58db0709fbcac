"""``ats worker``: one stream worker process."""

from __future__ import annotations

import asyncio
import logging

import faust

from availability.settings import Settings

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

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        logger.setLevel(level or logging.INFO)
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(level or logging.INFO, logging.INFO))


def build(settings: Settings, *, store: str | None = None) -> tuple[faust.App, Engine]:
    app = create_faust_app(settings, store=store)
    metrics = WorkerMetrics(settings)
    engine = Engine(app, settings, metrics=metrics)
    metrics.attach(app, engine)
    return app, engine


def run_worker(settings: Settings) -> None:
    (settings.data_dir / "worker").mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(settings))
    app, _engine = build(settings)
    worker = Worker(app, loglevel=_FAUST_LEVELS[settings.log_level], quiet=True)
    worker.execute_from_commandline()
