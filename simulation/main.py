"""``ats simulate`` once the product is running: build the day, run it, write the report."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from . import live, report
from .day import Day
from .profiles import Profile
from .run import Run
from .traffic import Sink, Target


def dump_tasks() -> None:
    """Where each task waits: its chain of awaited coroutines, outermost first (``Task.print_stack``
    shows only the outermost frame of a suspended task)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is None:
                print(f"    waiting on {awaited!r}", file=sys.stderr)
                break
            print(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}", file=sys.stderr)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    sys.stderr.flush()


def run_tag() -> str:
    """A short id for the run's locations: base-36 seconds, unique enough between runs on one deployment."""
    value, digits = int(time.time()) % 36**5, "0123456789abcdefghijklmnopqrstuvwxyz"
    tag = ""
    for _ in range(5):
        value, digit = divmod(value, 36)
        tag = digits[digit] + tag
    return f"sim{tag}"


async def simulate(target: Target, profile: Profile, *, seed: int, report_dir: Path, record: Path | None,
                   stack: str, drain_timeout_s: float, console: Console, tag: str | None = None) -> dict[str, Any]:
    """Run the profile against ``target``; returns the report (also written to ``report_dir``). SIGUSR1
    prints where every task of the run is waiting, to stderr (as a worker does, through mode)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    window_ms = target.erp_window_s * 1000
    start_ms = math.ceil(time.time() * 1000 / window_ms) * window_ms  # the day's windows start with it
    tag = tag or run_tag()
    day = Day(profile, seed=seed, tag=tag, start_ms=start_ms)
    with live.Live(console) as display:
        run = Run(target, day, sink=Sink(target.bootstrap, record=record), seed=seed, on_progress=display.update,
                  drain_timeout_s=drain_timeout_s)
        checked = await run.execute()
    result = report.build(run, checked, seed=seed, stack=stack)
    written = report.write(result, report_dir)
    console.print(live.table(report.rows(result), f"ats simulate --profile {profile.name} ({tag})"))
    console.print("report: " + ", ".join(str(path) for path in written))
    return result
