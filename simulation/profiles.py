"""Named peak-day profiles: the shape of a simulated trading day, compressed into ``duration_s``.

A profile is a frozen value; ``ats simulate`` options replace single fields (``--lines-per-s 20000``),
so a profile never has to be edited to be pushed harder or softer. Rates are wall-clock rates: the
business day (``day_hours``) runs ``compression`` times faster than the wall clock, so a 120 s run of
``black-friday`` stamps its events over a 14 h day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Spike:
    """A flash sale: from ``at`` for ``length`` (fractions of the run), traffic x ``multiplier``."""

    at: float
    length: float
    multiplier: float


@dataclass(frozen=True)
class Profile:
    name: str
    stores: int
    dcs: int
    skus: int
    #: Zipf exponent of SKU popularity (1.0: the k-th SKU sells 1/k as often as the first)
    zipf: float
    #: POS and back-office lines per wall second at the top of the ramp (before spikes)
    lines_per_s: float
    #: share of ``lines_per_s`` at the start; the rate climbs linearly to 1.0 at ``ramp_until`` (fraction)
    ramp_from: float
    ramp_until: float
    spikes: tuple[Spike, ...]
    #: GET /v1/availability/{sku} per second (x the spike multiplier during a flash sale)
    read_rps: float
    #: ecommerce holds (POST /v1/reservations) per second (x the spike multiplier)
    holds_per_s: float
    duration_s: float
    day_hours: float
    #: a store's range: the best-selling SKUs it carries (opening stock counted before the load); the web
    #: sells the whole catalogue from the DCs
    store_assortment: int
    #: mean lines of a POS basket (1 + geometric)
    basket_lines: float
    #: per POS line: a returned line, a store delivery (DSD receipt) line
    return_share: float
    damaged_share: float
    receipt_share: float
    #: cycle counts per store per business hour, SKUs per count
    counts_per_store_hour: float
    count_skus: int
    #: share of events redelivered (same event id, same body)
    duplicate_share: float
    #: share of stores that lose a till for a while: its sales arrive late, after a count of that store
    offline_share: float
    #: hold outcomes: sold (a sale names the reservation), released, left to expire (short TTL)
    hold_sold: float
    hold_released: float
    hold_ttl_s: int
    expiring_ttl_s: int
    #: doorbuster SKUs with little stock, held far beyond it during spikes (contention)
    flash_skus: int
    flash_stock: int
    #: share of holds during a spike that go to the doorbusters
    flash_hold_share: float
    #: DC positions with a safety stock (policy) and its size
    safety_share: float
    safety_stock: int
    #: a freshness probe (receipt of one unit) every this many seconds
    probe_interval_s: float

    def rate(self, fraction: float) -> float:
        """Traffic multiplier at ``fraction`` of the run: the ramp, times any spike in force."""
        ramp = 1.0 if fraction >= self.ramp_until or self.ramp_until <= 0 else (
            self.ramp_from + (1.0 - self.ramp_from) * fraction / self.ramp_until)
        return ramp * self.spike(fraction)

    def spike(self, fraction: float) -> float:
        for spike in self.spikes:
            if spike.at <= fraction < spike.at + spike.length:
                return spike.multiplier
        return 1.0

    @property
    def compression(self) -> float:
        """Business seconds per wall second."""
        return self.day_hours * 3600 / self.duration_s

    @property
    def mean_rate(self) -> float:
        """The mean of :meth:`rate` over the run (numerically)."""
        steps = 1000
        return sum(self.rate((i + 0.5) / steps) for i in range(steps)) / steps

    def with_options(self, **options: Any) -> Profile:
        """A copy with every option that is not None replacing its field."""
        known = {f.name for f in fields(self)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown profile fields: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in options.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["spikes"] = [vars(s) for s in self.spikes]
        out["compression"] = round(self.compression, 2)
        return out


BLACK_FRIDAY = Profile(
    name="black-friday", stores=200, dcs=4, skus=20_000, zipf=1.0,
    # The rate a peak day would need from one worker; the engine ingests ~10-15k lines/s today (issue 6):
    # lag is reported, not tuned away.
    lines_per_s=8_000, ramp_from=0.3, ramp_until=0.25,
    spikes=(Spike(0.40, 0.08, 2.5), Spike(0.75, 0.06, 3.0)),
    read_rps=200, holds_per_s=60, duration_s=120, day_hours=14, store_assortment=1000,
    basket_lines=4.0, return_share=0.04, damaged_share=0.15, receipt_share=0.03,
    counts_per_store_hour=0.5, count_skus=12, duplicate_share=0.01, offline_share=0.05,
    hold_sold=0.7, hold_released=0.2, hold_ttl_s=1800, expiring_ttl_s=8,
    flash_skus=5, flash_stock=40, flash_hold_share=0.5,
    safety_share=0.05, safety_stock=3, probe_interval_s=0.1,
)

SMOKE = replace(
    BLACK_FRIDAY, name="smoke", stores=12, dcs=2, skus=400, store_assortment=100, lines_per_s=300,
    spikes=(Spike(0.5, 0.2, 2.0),), read_rps=20, holds_per_s=8, duration_s=15, day_hours=2,
    counts_per_store_hour=6, count_skus=6,
    offline_share=0.25, flash_skus=2, flash_stock=6, expiring_ttl_s=3, probe_interval_s=0.25,
)

#: ten minutes of a steady trading day at a rate one worker holds on a shared 2-core machine, with the
#: whole event mix and a flash sale: the soak (`make soak`) judges memory, lag and error logs over it
#: (:mod:`simulation.health`). A smaller catalogue than black-friday's, so the positions are all known
#: by the second half and what grows after that is what the engine keeps, not what the day adds.
SOAK = replace(
    BLACK_FRIDAY, name="soak", stores=50, dcs=2, skus=2_000, store_assortment=400, lines_per_s=1_000,
    ramp_from=1.0, ramp_until=0.0, spikes=(Spike(0.6, 0.05, 2.0),), read_rps=100, holds_per_s=20,
    duration_s=600, flash_stock=200,
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (BLACK_FRIDAY, SMOKE, SOAK)}
