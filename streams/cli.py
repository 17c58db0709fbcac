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
import urllib.error
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


def _check_access(settings: Settings, command: str) -> None:
    """Refused credentials stop the command with status 2 and one line saying which (``streams.access``)."""
    from .access import AccessDenied, check_kafka, check_redis

    try:
        if settings.broker_url is not None:
            asyncio.run(check_kafka(settings))
        check_redis(settings)
    except AccessDenied as exc:
        click.echo(f"ats {command}: {exc}", err=True)
        sys.exit(2)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 140})
def cli() -> None:
    """Real-time inventory availability (ATS) engine."""


@cli.command(epilog=EPILOG)
def worker() -> None:
    """Run one stream worker (Faust) against ATS_BROKER_URL and ATS_REDIS_URL."""
    settings = _settings()
    _require_urls(settings)
    from availability.channels import ChannelsFileError, load_channels

    try:
        load_channels(settings.channels_file)  # the change feed's low-stock levels: fail now, in one line
    except ChannelsFileError as exc:
        click.echo(f"ats worker: {exc}", err=True)
        sys.exit(2)
    _check_access(settings, "worker")
    from .worker import run_worker

    run_worker(settings)


@cli.command(epilog=EPILOG)
def api() -> NoReturn:
    """Run the HTTP API against ATS_BROKER_URL and ATS_REDIS_URL."""
    settings = _settings()
    _require_urls(settings)
    _check_access(settings, "api")
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
    rows = run_reconcile(settings, lines)
    if as_json:
        shown = [row._asdict() for row in rows if row.drift or not only_drift]
        click.echo(json.dumps(shown, indent=2))
    else:
        for line in render(rows, only_drift=only_drift):
            click.echo(line)
    if fail_on_drift and any(row.drift for row in rows):
        sys.exit(1)


_API_OPTIONS = (
    click.option("--api", "api_url", envvar="ATS_API_URL", show_envvar=True,
                 help="the API's base URL [default: http://ATS_API_HOST:ATS_API_PORT]"),
    click.option("--token", envvar="ATS_TOKEN", show_envvar=True, required=True,
                 help="a bearer token with the admin scope"),
)


def _api_options(command: Any) -> Any:
    for option in reversed(_API_OPTIONS):
        command = option(command)
    return command


def _client(api_url: str | None, token: str) -> Any:
    from .deadletters import DeadLetterClient

    if api_url is None:
        settings = _settings()
        api_url = f"http://{settings.api_host}:{settings.api_port}"
    return DeadLetterClient(api_url, token)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@cli.group()
def deadletters() -> None:
    """Rejected input (inventory.dead-letter): list, show, redrive. A client of the API's /v1/deadletters
    routes: give it the API (--api / ATS_API_URL) and an admin token (--token / ATS_TOKEN)."""


_FILTERS = (
    click.option("--reason", "reasons", multiple=True, help="only this reason (repeatable)"),
    click.option("--since", help="dead-lettered at or after: RFC 3339 with an offset, or 90s, 15m, 6h, 7d back"),
    click.option("--topic", help="only records that arrived on this input topic"),
    click.option("--cursor", help="continue where the previous page or redrive stopped"),
)


def _filters(command: Any) -> Any:
    for option in reversed(_FILTERS):
        command = option(command)
    return command


@deadletters.command("list")
@_filters
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="records per page")
@click.option("--json", "as_json", is_flag=True, help="print the API's page as JSON")
@_api_options
def deadletters_list(reasons: tuple[str, ...], since: str | None, topic: str | None, cursor: str | None,
                     limit: int, as_json: bool, api_url: str | None, token: str) -> None:
    """Dead letters, newest first: id (partition:offset in inventory.dead-letter), when, reason, origin, detail."""
    query = [("reason", reason) for reason in reasons]
    query += [(name, value) for name, value in (("since", since), ("topic", topic), ("cursor", cursor)) if value]
    page = _client(api_url, token).list([*query, ("limit", str(limit))])
    if as_json:
        _echo_json(page)
        return
    from .deadletters import render_page

    for line in render_page(page):
        click.echo(line)


@deadletters.command("show")
@click.argument("dead_letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="print the record as JSON")
@_api_options
def deadletters_show(dead_letter_id: str, as_json: bool, api_url: str | None, token: str) -> None:
    """One dead letter with its whole payload (ID as listed, e.g. 3:17)."""
    item = _client(api_url, token).show(dead_letter_id)
    if as_json:
        _echo_json(item)
        return
    from .deadletters import render_letter

    for line in render_letter(item):
        click.echo(line)


@deadletters.command("redrive")
@click.option("--id", "ids", multiple=True, help="a dead letter to re-submit (repeatable)")
@click.option("--partition", type=click.IntRange(0), help="with --from-offset/--to-offset: a range of one "
                                                          "dead-letter partition")
@click.option("--from-offset", type=click.IntRange(0))
@click.option("--to-offset", type=click.IntRange(0), help="included")
@_filters
@click.option("--limit", type=click.IntRange(1, 500), default=500, show_default=True,
              help="at most this many records (newest first)")
@click.option("--correction", type=click.File("rb"),
              help="a file (or - for stdin) holding the corrected event, for exactly one --id")
@click.option("--dry-run", is_flag=True, help="validate and report; produce nothing")
@click.option("--json", "as_json", is_flag=True, help="print the API's report as JSON")
@_api_options
def deadletters_redrive(ids: tuple[str, ...], partition: int | None, from_offset: int | None,
                        to_offset: int | None, reasons: tuple[str, ...], since: str | None, topic: str | None,
                        cursor: str | None, limit: int, correction: Any, dry_run: bool, as_json: bool,
                        api_url: str | None, token: str) -> None:
    """Re-submit dead letters through the validation every event takes; valid ones are produced to their
    topic keyed by location (header ats-redrive-of: ID). Redriving twice applies nothing twice (event ids)."""
    body: dict[str, Any] = {"limit": limit, "dry_run": dry_run}
    if ids:
        body["ids"] = list(ids)
    ranged = (partition, from_offset, to_offset)
    if any(value is not None for value in ranged):
        if any(value is None for value in ranged):
            raise click.UsageError("--partition, --from-offset and --to-offset go together")
        body["range"] = {"partition": partition, "from_offset": from_offset, "to_offset": to_offset}
    if reasons:
        body["reason"] = list(reasons)
    body.update({name: value for name, value in (("since", since), ("topic", topic), ("cursor", cursor)) if value})
    if correction is not None:
        try:
            body["correction"] = json.loads(correction.read())
        except ValueError as exc:
            raise click.UsageError(f"--correction: not JSON: {exc}") from None
    report = _client(api_url, token).redrive(body)
    if as_json:
        _echo_json(report)
        return
    from .deadletters import render_report

    for line in render_report(report):
        click.echo(line)


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
    _check_access(settings, "up")  # what is configured; the embedded servers need no credentials
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
        # Ctrl-C and SIGTERM stop everything, also when this process was started with SIGINT ignored
        # (a background job of a script, nohup): Python then keeps SIG_IGN instead of KeyboardInterrupt.
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        settings = self.settings
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.overrides}
        if settings.broker_url is None:
            broker = embedded.start_broker(data_dir / "broker")
            self.services.append(broker)
            env["ATS_BROKER_URL"] = broker.url
            # The embedded broker holds every join for half the group's session timeout (a worker
            # that stops now leaves even from generation 0, see streams.app): a short session keeps
            # starts and restarts to seconds.
            env.setdefault("ATS_SESSION_TIMEOUT_SECONDS", "3")
            env.setdefault("ATS_HEARTBEAT_INTERVAL_SECONDS", "0.5")
            click.echo(f"embedded broker  {broker.url}  (memory storage; log {broker.log_path})")
        if settings.redis_url is None:
            cache = embedded.start_cache(data_dir / "cache")
            self.services.append(cache)
            env["ATS_REDIS_URL"] = cache.url
            click.echo(f"embedded cache   {cache.url}  (log {cache.log_path})")
        token = None
        if not settings.tokens_configured:
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
            if child_settings.worker_metrics_port:  # one machine: one port each
                worker_env["ATS_WORKER_METRICS_PORT"] = str(child_settings.worker_metrics_port + index)
            self.children.append(self._spawn("worker", [sys.executable, "-m", "streams", "worker"],
                                             worker_env, logs / f"worker-{index}.log"))
        api = self._spawn("api", [sys.executable, "-m", "api"], env, logs / "api.log")
        self.children.append(api)
        url = self.api_url = f"http://{child_settings.api_host}:{child_settings.api_port}"
        self.token = token
        _wait_http(f"{url}/healthz", timeout=60.0, process=api)
        click.echo(f"API              {url}   (logs in {logs})")
        if child_settings.worker_metrics_port:
            more = " (+1 per further worker)" if self.workers > 1 else ""
            click.echo(f"worker metrics   http://{child_settings.worker_metrics_host}:"
                       f"{child_settings.worker_metrics_port}/metrics{more}")
        click.echo(f"console          {url}/console")
        if token:
            click.echo(f"dev token        {token}")
            click.echo(f"try              curl -H 'Authorization: Bearer {token}' {url}/v1/availability/SKU-1")
        # ready as /readyz says it: the API answered before the workers had joined, loaded their partitions
        # and beaten once (a new user's first curls met 503s, and /readyz said "no worker heartbeat")
        if (waiting := _not_ready(f"{url}/readyz", timeout=READY_TIMEOUT_SECONDS, process=api)) is None:
            click.echo("ready; Ctrl-C stops everything")
        else:
            click.echo(f"API up, workers not ready after {READY_TIMEOUT_SECONDS:.0f} s ({waiting}); they go on "
                       "starting: see /readyz and the worker logs. Ctrl-C stops everything")

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
    if _not_ready(url, timeout=timeout, process=process) is not None:
        raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


#: how long ``ats up`` waits for ``/readyz`` after the API answers (recovering 1M positions takes ~20 s)
READY_TIMEOUT_SECONDS = 120.0


def _not_ready(url: str, *, timeout: float, process: subprocess.Popen[bytes]) -> str | None:
    """None once ``url`` answers 200; else, after ``timeout``, the last ``detail`` it answered (``/readyz``)."""
    detail = "no answer"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return None
        except urllib.error.HTTPError as exc:  # 503 while the workers start
            with exc:
                body = json.loads(exc.read() or b"{}")
            detail = body.get("detail", f"HTTP {exc.code}") if isinstance(body, dict) else f"HTTP {exc.code}"
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return detail


def main() -> None:
    cli(prog_name="ats")


# Registered last: they use the Supervisor and the helpers above.
from .simulate import replay as _replay  # noqa: E402
from .simulate import simulate as _simulate  # noqa: E402

cli.add_command(_simulate)
cli.add_command(_replay)
