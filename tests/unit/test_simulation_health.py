"""The soak's judgement of a run (:mod:`simulation.health`): memory flat, lag bounded, no error logs."""

from __future__ import annotations

from simulation.health import judge

LOAD_S = 100.0
MESSAGES = 10_000  # 100 messages/s: the lag may reach 1,000 records (10 s of them)


def steady(rss: float = 500.0, growth: float = 0.0, errors: int = 0) -> list[tuple[float, float | None, int]]:
    return [(float(t), rss + growth * t / LOAD_S, errors) for t in range(1, 101)]


def run(workers: dict[str, list[tuple[float, float | None, int]]], lag: int = 200, drained: bool = True,
        ) -> dict:
    return judge(load_s=LOAD_S, messages=MESSAGES, drained=drained,
                 lag=[(float(t), lag) for t in range(1, 101)], workers=workers)


def test_a_steady_run_is_healthy() -> None:
    judged = run({"w0": steady()})
    assert judged["healthy"]
    assert judged["memory"]["workers"]["w0"]["growth_mib"] == 0
    assert judged["lag"]["bound_records"] == 1_000


def test_memory_that_climbs_in_the_second_half_is_not_flat() -> None:
    judged = run({"w0": steady(growth=200.0)})  # +100 MiB over the second half, 64 allowed
    assert not judged["memory"]["flat"]
    assert not judged["healthy"]
    assert judged["memory"]["workers"]["w0"]["growth_mib"] > judged["memory"]["workers"]["w0"]["allowed_mib"]


def test_growth_during_the_warm_up_is_not_judged() -> None:
    warming = [(t, mib if t > 50 else mib * t / 50, e) for t, mib, e in steady()]
    assert run({"w0": warming})["memory"]["flat"]


def test_a_lag_over_ten_seconds_of_load_at_its_end_or_a_run_not_drained_is_not_bounded() -> None:
    assert not run({"w0": steady()}, lag=1_001)["lag"]["bounded"]
    assert not run({"w0": steady()}, drained=False)["lag"]["bounded"]


def test_a_flash_sale_backlog_that_clears_is_bounded_one_that_stays_is_not() -> None:
    spike = [(float(t), 2_500 if 60 <= t < 70 else 200) for t in range(1, 101)]  # 25 s of load, then cleared
    judged = judge(load_s=LOAD_S, messages=MESSAGES, drained=True, lag=spike, workers={"w0": steady()})
    assert judged["lag"]["bounded"]
    assert (judged["lag"]["max_second_half_records"], judged["lag"]["at_load_end_records"]) == (2_500, 200)
    over = [(t, 3_001 if records > 200 else records) for t, records in spike]  # over 30 s of load behind
    assert not judge(load_s=LOAD_S, messages=MESSAGES, drained=True, lag=over, workers={"w0": steady()})["lag"][
        "bounded"]
    growing = [(float(t), 20 * t) for t in range(1, 101)]  # never cleared: 2,000 behind at the end
    assert not judge(load_s=LOAD_S, messages=MESSAGES, drained=True, lag=growing, workers={"w0": steady()})["lag"][
        "bounded"]


def test_error_records_logged_during_the_run_count_across_a_restart() -> None:
    samples = steady(errors=3)  # logged before the run: not the run's
    samples[40] = (41.0, 500.0, 5)  # two during the run
    samples[41:] = [(t, mib, 1) for t, mib, _ in samples[41:]]  # restarted: one more
    judged = run({"w0": samples})
    assert judged["error_logs"]["workers"] == {"w0": 3}
    assert not judged["healthy"]


def test_no_worker_samples_is_not_healthy() -> None:
    judged = run({})
    assert not judged["healthy"]
    assert not judged["memory"]["flat"]
    assert not judged["error_logs"]["none"]
