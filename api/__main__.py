"""``python -m api``: run the API with settings from the environment."""

from __future__ import annotations

import gc
import logging
import sys

from aiohttp import web

from availability.channels import ChannelsFileError
from availability.settings import SettingsError, load_settings

from .app import create_app


async def freeze_startup_heap(app: web.Application) -> None:
    """Move what starting allocated (modules, the app, its connections: ~78k objects) out of the garbage
    collector's view: it lives as long as the process, and every full collection scanned it again
    (~30 ms each, a pause for every request in flight; ~1 ms once frozen)."""
    gc.collect()
    gc.freeze()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ats api: {exc}", file=sys.stderr)
        sys.exit(2)
    if not settings.redis_url or not settings.broker_url:
        print("ats api: ATS_BROKER_URL and ATS_REDIS_URL must be set (or use `ats up`)", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = create_app(settings)
    except ChannelsFileError as exc:
        print(f"ats api: {exc}", file=sys.stderr)
        sys.exit(2)
    app.on_startup.append(freeze_startup_heap)  # after the connections (cleanup_ctx) are made
    # A GET may name up to 1,000 locations in its query string: allow request lines as long as a body.
    web.run_app(app, host=settings.api_host, port=settings.api_port, print=None, access_log=None,
                shutdown_timeout=5.0, max_line_size=settings.max_body_bytes)


main()
