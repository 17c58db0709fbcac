"""The domain's ceiling (:mod:`benchmarks.ceiling`) applies the whole workload: its figure is the domain's
work on every line, not on a part of them."""

from __future__ import annotations

from benchmarks import ceiling
from benchmarks.workload import build


def test_the_ceiling_applies_every_line_of_the_workload() -> None:
    workload = build(2_000, 10, 4)
    cpu_s, states, drains = ceiling.apply(workload, 4, flushes=12)
    totals: dict[str, int] = {}
    for state in states:
        assert not state.dirty  # drained at the end
        for sku, _, position in state.positions():
            totals[sku] = totals.get(sku, 0) + position.on_hand
    assert totals == workload.on_hand
    assert drains == 4
    assert cpu_s > 0
    assert ceiling.measure(workload, 4, 12)["lines_per_s"] > 0
