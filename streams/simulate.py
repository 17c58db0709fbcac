"""``ats simulate`` and ``ats replay``: the commands. The simulator itself is :mod:`simulation` (a client of
the product: Kafka, the HTTP API and the workers' heartbeats, never the engine's code).

Both run against ``ATS_BROKER_URL`` / ``ATS_REDIS_URL`` and the API when configured; otherwise they start
what is missing the way ``ats up`` does (:class:`streams.cli.Supervisor`), on free ports and a fresh data
directory, and stop it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from availability.settings import Settings
from simulation.profiles import PROFILES

from . import embedded
from .cli import EPILOG, Supervisor, _settings

NEEDED_SCOPES = frozenset({"availability:read", "reservations:write"})


@contextlib.contextmanager
def product(settings: Settings, *, api_url: str | None, token: str | None, workers: int, tag: str,
            ) -> Iterator[tuple[Settings, str, str, str]]:
    """(settings, API URL, token, "configured"|"embedded"|"started"): the running product, started if needed."""
    url = api_url or f"http://{settings.api_host}:{settings.api_port}"
    if settings.broker_url and settings.redis_url and _answers(url):
        yield settings, url, token or _token(settings), "configured"
        return
    data_dir = settings.data_dir / "simulate" / tag
    # free ports: another product (or simulation) on this machine must not take the API's or the workers' metrics
    overrides = {"ATS_DATA_DIR": str(data_dir), "ATS_API_PORT": str(embedded.free_port()),
                 "ATS_WORKER_METRICS_PORT": str(embedded.free_port())}
    started = settings.model_copy(update={"data_dir": data_dir})
    supervisor = Supervisor(started, workers=workers, env=overrides)
    try:
        supervisor.start()
        assert supervisor.child_settings is not None
        child = supervisor.child_settings
        yield child, supervisor.api_url, token or supervisor.token or _token(child), (
            "embedded" if settings.broker_url is None else "started")
    finally:
        supervisor.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2.0) as response:  # noqa: S310 - the API's URL
            return bool(response.status == 200)
    except OSError:
        return False


def _token(settings: Settings) -> str:
    for token, scopes in settings.tokens.items():
        if scopes >= NEEDED_SCOPES:
            return token
    raise click.UsageError("no token with availability:read and reservations:write in ATS_API_TOKENS: pass --token")


def _spikes(value: str | None) -> Any:
    from simulation.profiles import Spike

    if value is None:
        return None
    if value in ("", "none"):
        return ()
    try:
        return tuple(Spike(*(float(x) for x in part.split(":"))) for part in value.split(","))
    except (TypeError, ValueError):
        raise click.BadParameter("expected AT:LENGTH:MULTIPLIER[,...] (fractions of the run), or 'none'",
                                 param_hint="--spikes") from None


@click.command(epilog=EPILOG)
@click.option("--profile", "profile_name", default="black-friday", show_default=True,
              type=click.Choice(list(PROFILES)), help="named peak-day profile")
@click.option("--duration", type=click.FloatRange(1), help="seconds of load [profile]")
@click.option("--stores", type=click.IntRange(1, 990), help="stores [profile]")
@click.option("--dcs", type=click.IntRange(1, 9), help="distribution centres [profile]")
@click.option("--skus", type=click.IntRange(10), help="SKUs in the catalogue [profile]")
@click.option("--zipf", type=click.FloatRange(0), help="Zipf exponent of SKU popularity [profile]")
@click.option("--lines-per-s", type=click.FloatRange(1), help="lines/s at the top of the ramp [profile]")
@click.option("--ramp-from", type=click.FloatRange(0, 1), help="share of the rate at the start [profile]")
@click.option("--ramp-until", type=click.FloatRange(0, 1), help="fraction of the run where the ramp ends [profile]")
@click.option("--spikes", help="flash sales AT:LENGTH:MULTIPLIER,... (fractions of the run) or 'none' [profile]")
@click.option("--read-rps", type=click.FloatRange(0), help="availability reads per second [profile]")
@click.option("--holds-per-s", type=click.FloatRange(0), help="ecommerce holds per second [profile]")
@click.option("--day-hours", type=click.FloatRange(0.1, 23), help="business hours the run stands for [profile]")
@click.option("--seed", default=1, show_default=True, type=int, help="the day's random seed")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="directory for report.json and the charts [.ats/reports/simulate-<UTC time>]")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="also write every event produced to this JSON-lines file (`ats replay` reads it)")
@click.option("--api", "api_url", help="the API's URL when the product runs already [http://ATS_API_HOST:ATS_API_PORT]")
@click.option("--token", help="a bearer token with availability:read and reservations:write")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="worker processes, when the simulator starts the product")
@click.option("--drain-timeout", default=300.0, show_default=True, type=click.FloatRange(1),
              help="seconds to wait for the engine to apply the load after it ends (the report says if it did not), "
                   "and the opening stock before it")
@click.option("--require-health", is_flag=True,
              help="also exit 1 unless worker memory stayed flat, the lag stayed bounded and no worker logged an "
                   "ERROR (the soak's criteria, judged over the second half of the load)")
def simulate(profile_name: str, seed: int, report_dir: Path | None, record: Path | None, api_url: str | None,
             token: str | None, workers: int, drain_timeout: float, spikes: str | None, require_health: bool,
             **options: Any) -> None:
    """A peak-day simulation that is also a load test.

    Produces the day's event mix to Kafka (POS baskets, returns, store deliveries, DC→store transfers,
    counts with offline tills replaying late, duplicates), holds and reads through the API, then checks
    every position against its own arithmetic and reads the ERP feed. Writes report.json and PNG charts.
    Runs against ATS_BROKER_URL / ATS_REDIS_URL and the API when configured; otherwise starts them as
    `ats up` does. Exits 1 on an oversell or a position that differs from the arithmetic (and, with
    --require-health, on worker memory that grew, a lag that grew or a worker ERROR log line).
    """
    from rich.console import Console

    from simulation.main import run_tag
    from simulation.main import simulate as run_simulation

    settings = _settings()
    renamed = {"duration": "duration_s"}
    chosen = {renamed.get(name, name): value for name, value in options.items()}
    profile = PROFILES[profile_name].with_options(**chosen, spikes=_spikes(spikes))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = report_dir or settings.data_dir / "reports" / f"simulate-{stamp}"
    console = Console()
    tag = run_tag()
    try:
        with product(settings, api_url=api_url, token=token, workers=workers, tag=tag) as (running, url, key, stack):
            from simulation.traffic import Target

            target = Target(running.bootstrap_servers, running.redis_url or "", url, key, running.partitions,
                            running.erp_window_seconds, running.erp_grace_seconds, running.tick_interval_ms,
                            running.redis_cluster)
            result = asyncio.run(run_simulation(target, profile, seed=seed, report_dir=report_dir, record=record,
                                                stack=stack, drain_timeout_s=drain_timeout, console=console,
                                                tag=tag))
    except KeyboardInterrupt:
        sys.exit(130)
    except (RuntimeError, TimeoutError, OSError) as exc:
        click.echo(f"ats simulate: {exc}", err=True)
        sys.exit(1)
    if result["oversell"]["count"] or result["state"].get("mismatches"):
        sys.exit(1)
    if require_health and not result["health"]["healthy"]:
        click.echo("ats simulate: unhealthy run (see the memory, lag and error-log rows)", err=True)
        sys.exit(1)


@click.command(epilog=EPILOG)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=click.FloatRange(0, min_open=True), help="events per second")
@click.option("--speed", type=click.FloatRange(0, min_open=True),
              help="x the gaps between the events' occurred_at (1: as they happened)")
@click.option("--strict", is_flag=True, help="stop at the first bad line (exit 1) instead of skipping it")
def replay(file: Path, rate: float | None, speed: float | None, strict: bool) -> None:
    """Replay a JSON-lines file of events onto their topics (keyed by location), with a progress bar.

    Every line is validated by the engine's rules; a bad line is reported with its line number and
    skipped (--strict stops). Without --rate or --speed, as fast as possible. Produces to ATS_BROKER_URL;
    with none configured, starts everything as `ats up` does, replays, and keeps it running until Ctrl-C.
    `ats simulate --record FILE` writes such a file.
    """
    from simulation.replay import Pacing

    if rate and speed:
        raise click.UsageError("--rate and --speed exclude each other")
    settings = _settings()
    pacing = Pacing(rate=rate, speed=speed)
    try:
        if settings.broker_url:
            failed = _replay(settings, file, pacing, strict)
        else:
            with product(settings, api_url=None, token=None, workers=1, tag="replay") as (running, url, _, _):
                failed = _replay(running, file, pacing, strict)
                if not failed:
                    click.echo(f"replayed; the product keeps running at {url}: Ctrl-C stops everything")
                    while True:  # until Ctrl-C (ats up's SIGTERM handler raises it too)
                        time.sleep(3600)
    except KeyboardInterrupt:
        sys.exit(130)
    if failed:
        sys.exit(1)


def _replay(settings: Settings, file: Path, pacing: Any, strict: bool) -> bool:
    """Replay with a progress bar and a report of bad lines; True when a strict replay stopped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulation.replay import count_lines, replay
    from simulation.traffic import Sink

    console = Console()
    total = count_lines(file)
    columns = (TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[bad]} bad"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("replay", total=total, bad=0)
        bad = 0

        def seen(item: Any) -> None:
            nonlocal bad
            bad += hasattr(item, "reason")
            progress.update(task, advance=1, bad=bad)

        async def run() -> Any:
            sink = Sink(settings.bootstrap_servers)
            await sink.start()
            try:
                return await replay(sink, file, pacing, strict=strict, on_line=seen)
            finally:
                await sink.stop()

        outcome = asyncio.run(run())
    for line in outcome.bad:
        console.print(f"{file}:{line.number}: skipped: {line.reason}: {line.detail}", markup=False, highlight=False)
    console.print(f"replayed {outcome.events:,} events ({outcome.lines:,} lines) in {outcome.seconds:.1f} s "
                  f"({pacing.describe()}); {len(outcome.bad)} bad line(s)", markup=False, highlight=False)
    if outcome.stopped_at is not None:
        console.print(f"--strict: stopped at line {outcome.stopped_at}", markup=False, highlight=False)
        return True
    return False
