"""``ats``: the command line. Settings are parsed here, once, and passed down.

``ats up`` supervises the embedded broker and cache (unless URLs are configured), the worker and the
API as child processes; ``ats worker`` and ``ats api`` run one part each. The API runs as
``python -m api`` so that it never imports the stream processor.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import click

from availability.settings import SCOPES, Settings, SettingsError, describe_variables, load_settings

from . import embedded


def _variables_epilog() -> str:
    lines = ["\b", "Configuration (environment variables, or a .env file):"]
    for name, default, meaning in describe_variables():
        lines.append(f"  {name:<32} default {default:<12} {meaning}")
    return "\n".join(lines)


EPILOG: str = _variables_epilog()


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 140})
def cli() -> None:
    """Real-time inventory availability (ATS) engine."""


@cli.command(epilog=EPILOG)
def worker() -> None:
    """Run one stream worker (Faust) against ATS_BROKER_URL and ATS_REDIS_URL."""
    settings = _settings()
    _require_urls(settings)
    from .worker import run_worker

    run_worker(settings)


@cli.command(epilog=EPILOG)
def api() -> NoReturn:
    """Run the HTTP API against ATS_BROKER_URL and ATS_REDIS_URL."""
    settings = _settings()
    _require_urls(settings)
    os.execv(sys.executable, [sys.executable, "-m", "api"])  # noqa: S606 - replaces this process on purpose


@cli.group()
def erp() -> None:
    """The ERP feed: reconciliation against the ERP's books."""


@erp.command(epilog=EPILOG)
@click.argument("book", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--only-drift", is_flag=True, help="print only positions whose drift is not 0")
@click.option("--json", "as_json", is_flag=True, help="print the rows as JSON")
@click.option("--fail-on-drift", is_flag=True, help="exit with status 1 when any position drifts")
def reconcile(book: Path, only_drift: bool, as_json: bool, fail_on_drift: bool) -> None:
    """Drift per position: the engine's on_hand (from ATS_REDIS_URL) minus the ERP's book on_hand.

    BOOK is CSV (header: sku, location_id, on_hand) or JSON ([{"sku", "location_id", "on_hand"}, ...]).
    Positions the engine has for the book's SKUs but the book lacks count as booked 0.
    """
    settings = _settings()
    if not settings.redis_url:
        raise click.UsageError("ATS_REDIS_URL must be set: the engine's positions are read from the cache")
    from availability.drift import BookError, parse_book

    from .reconcile import reconcile as run_reconcile
    from .reconcile import render

    try:
        lines = parse_book(book.read_text(encoding="utf-8"), name=book.name)
    except (BookError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{book}: {exc}") from None
    rows = run_reconcile(settings.redis_url, lines)
    if as_json:
        shown = [row._asdict() for row in rows if row.drift or not only_drift]
        click.echo(json.dumps(shown, indent=2))
    else:
        for line in render(rows, only_drift=only_drift):
            click.echo(line)
    if fail_on_drift and any(row.drift for row in rows):
        sys.exit(1)


def _require_urls(settings: Settings) -> None:
    missing = [name for name, value in (("ATS_BROKER_URL", settings.broker_url),
                                        ("ATS_REDIS_URL", settings.redis_url)) if not value]
    if missing:
        raise click.UsageError(f"{' and '.join(missing)} must be set (or use `ats up`, which starts embedded ones)")


@cli.command(epilog=EPILOG)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="worker processes to start")
def up(workers: int) -> None:
    """Start everything: embedded broker and cache (unless configured), worker(s) and the API.

    Prints the API URL and a development token; Ctrl-C stops every child.
    """
    settings = _settings()
    supervisor = Supervisor(settings, workers=workers)
    try:
        supervisor.start()
        supervisor.wait()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, OSError) as exc:
        click.echo(f"ats up: {exc}", err=True)
        supervisor.stop()
        sys.exit(1)
    finally:
        supervisor.stop()


class Supervisor:
    """Starts and stops the children of ``ats up``, in order, leaving nothing behind."""

    def __init__(self, settings: Settings, *, workers: int, env: dict[str, str] | None = None) -> None:
        """``env``: variables the children get on top of this process's environment."""
        self.settings = settings
        self.workers = workers
        self.overrides = env or {}
        self.services: list[embedded.EmbeddedServer] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self._stopped = False
        #: what the children were started with, once :meth:`start` returns
        self.child_settings: Settings | None = None
        self.api_url = ""
        self.token: str | None = None

    def start(self) -> None:
        signal.signal(signal.SIGTERM, _raise_interrupt)
        settings = self.settings
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.overrides}
        if settings.broker_url is None:
            broker = embedded.start_broker(data_dir / "broker")
            self.services.append(broker)
            env["ATS_BROKER_URL"] = broker.url
            # The embedded broker holds a join for half the session timeout and never sees a
            # first-generation member leave: a short session keeps restarts to seconds.
            env.setdefault("ATS_SESSION_TIMEOUT_SECONDS", "3")
            env.setdefault("ATS_HEARTBEAT_INTERVAL_SECONDS", "0.5")
            click.echo(f"embedded broker  {broker.url}  (memory storage; log {broker.log_path})")
        if settings.redis_url is None:
            cache = embedded.start_cache(data_dir / "cache")
            self.services.append(cache)
            env["ATS_REDIS_URL"] = cache.url
            click.echo(f"embedded cache   {cache.url}  (log {cache.log_path})")
        token = None
        if settings.api_tokens is None:
            token = "dev-" + secrets.token_urlsafe(24)
            env["ATS_API_TOKENS"] = f"{token}={','.join(sorted(SCOPES))}"
        child_settings = self.child_settings = load_settings(env)

        from .admin import ensure_topics

        created = asyncio.run(ensure_topics(child_settings))
        click.echo(f"topics ready     {settings.partitions} partitions ({len(created)} created)")

        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        for index in range(self.workers):
            worker_env = dict(env)
            if self.workers > 1:
                worker_env["ATS_DATA_DIR"] = str(data_dir / f"worker-{index}")
            self.children.append(self._spawn("worker", [sys.executable, "-m", "streams", "worker"],
                                             worker_env, logs / f"worker-{index}.log"))
        api = self._spawn("api", [sys.executable, "-m", "api"], env, logs / "api.log")
        self.children.append(api)
        url = self.api_url = f"http://{child_settings.api_host}:{child_settings.api_port}"
        self.token = token
        _wait_http(f"{url}/healthz", timeout=60.0, process=api)
        click.echo(f"API              {url}   (logs in {logs})")
        if token:
            click.echo(f"dev token        {token}")
            click.echo(f"try              curl -H 'Authorization: Bearer {token}' {url}/v1/availability/SKU-1")
        click.echo("ready; Ctrl-C stops everything")

    @staticmethod
    def _spawn(name: str, args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        try:
            return embedded.child_process(args, log=log, env=env)
        finally:
            log.close()

    def wait(self) -> None:
        while True:
            for child in self.children:
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args!r} exited with {child.returncode}; "
                                       f"see {self.settings.data_dir / 'logs'}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # API first (stop taking requests), then workers (commit), then the servers they use.
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            embedded.stop_process(child, timeout=15.0)
        for service in reversed(self.services):
            service.stop()
        click.echo("stopped")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_http(url: str, *, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def main() -> None:
    cli(prog_name="ats")


# Registered last: they use the Supervisor and the helpers above.
from .simulate import replay as _replay  # noqa: E402
from .simulate import simulate as _simulate  # noqa: E402

cli.add_command(_simulate)
cli.add_command(_replay)
