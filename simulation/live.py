"""Live progress on the terminal (rich): the phase, a bar over the load's duration, the running rates.
Printed to a pipe or a file instead (no terminal), each phase gets one plain line as it begins: a run
stopped from outside has said how far it got."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class Live:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description:<7}"), BarColumn(bar_width=30), TaskProgressColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=console, refresh_per_second=4)
        self.task = self.progress.add_task("start", total=1.0, stats="")
        self.phase = ""

    def __enter__(self) -> Live:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, phase: str, done: float, stats: dict[str, Any]) -> None:
        self.progress.update(self.task, description=phase, completed=done, stats=describe(stats))
        if phase != self.phase and not self.console.is_terminal:
            self.console.print(f"{phase}: {describe(stats)}".rstrip(": "))
        self.phase = phase


def describe(stats: dict[str, Any]) -> str:
    parts = []
    if "target" in stats:
        parts.append(f"{stats['lines']:>7,} lines/s (target {stats['target']:,})")
    elif "lines" in stats:
        parts.append(f"{stats['lines']:,} lines of opening stock")
    if "lag" in stats:
        parts.append(f"lag {_n(stats['lag'])}")
    if "reads" in stats:
        parts.append(f"reads {stats['reads']}/s p99 {_ms(stats['read_p99'])}")
        parts.append(f"holds {stats['holds']}/s p99 {_ms(stats['hold_p99'])}")
        parts.append(f"fresh p50 {_ms(stats['fresh'])}")
    return " · ".join(parts)


def table(rows: list[tuple[str, str]], title: str) -> Table:
    out = Table(title=title, show_header=True, header_style="bold")
    out.add_column("figure")
    out.add_column("value")
    for name, value in rows:
        out.add_row(name, value)
    return out


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"
