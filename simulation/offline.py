"""A day played without the product (no I/O): holds are decided from the day's own book, as the owning
worker would decide them with every event applied, and releases are answered at once. The generator's
unit tests and the ERP netting benchmark use it."""

from __future__ import annotations

from typing import Any

from .day import Day, HoldRequest, Produce, Release


def play(day: Day, *, seconds: float | None = None, step: float = 0.05) -> tuple[list[Produce], list[Any]]:
    """Seed, run ``seconds`` of the load (the whole profile by default) and close the day; returns every
    event in production order, and the holds and releases asked for."""
    profile = day.profile
    produced: list[Produce] = [*day.seed(), *day.open_stores()]
    others: list[Any] = []
    until = profile.duration_s if seconds is None else seconds
    lines = holds = now = 0.0
    asked = 0
    while now < until:
        now += step
        rate = profile.rate(now / profile.duration_s)
        lines += profile.lines_per_s * rate * step
        holds += profile.holds_per_s * rate * step
        for item in day.advance(now, int(lines)):
            if isinstance(item, Release):
                others.append(item)
                day.releasing(item.reservation_id, now)
                day.released(item.reservation_id, "released")
            else:
                produced.append(item)
        due = int(holds) - asked
        asked += max(0, due)
        for request in day.holds(max(0, due), now):
            others.append(request)
            _decide(day, request, now)
    produced += [item for item in day.close(now) if isinstance(item, Produce)]
    day.settle()
    return produced, others


def _decide(day: Day, request: HoldRequest, now: float) -> None:
    """Held if every line fits the stock the book believes free (the claim is already counted in it)."""
    fits = all(day.book.free((request.location_id, sku)) >= 0 for sku, _ in request.lines)
    day.decided(request.reservation_id, "held" if fits else "rejected", now, now + request.ttl_seconds)
