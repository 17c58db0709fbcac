"""The simulated trading day: a seeded, pure generator of the peak-day event mix (no I/O, no clock).

The runner asks it, at run time ``now_s`` (wall seconds since the load started), for the traffic due:
:meth:`Day.advance` returns the events to produce (POS baskets, returns, store deliveries, DC→store
transfers shipped and later received, cycle counts, offline tills replaying late, ecommerce sales naming
their hold, redelivered duplicates) and the releases to send; :meth:`Day.holds` returns ecommerce holds to
POST. The runner tells it what the API decided (:meth:`decided`, :meth:`released`), and the day books
everything in its :class:`~simulation.book.Book`: the arithmetic every position must end with.

Business time (``occurred_at``) starts at ``start_ms`` and runs ``profile.compression`` times faster than
the wall clock; every stamp is unique and increasing, so a count's "as of" never ties with a movement.
Opening stock is stamped before ``start_ms`` (DC receipts an hour before, a store's opening count 1 ms
before), so the day's own ERP windows hold the day's own movements.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

from availability import topics

from . import catalog
from .book import Book
from .profiles import Profile

MAX_LINES = 1_000
#: the kinds of event that are the day's own on-hand movements (what the ERP would receive raw);
#: opening stock, policies, duplicates, probes and sentinels are not
MOVEMENT_KINDS = ("pos_sale", "late_sale", "ecom_sale", "return", "receipt_store", "receipt_dc",
                  "transfer_shipped", "transfer_received", "count_cycle")


class Produce(NamedTuple):
    topic: str
    key: str
    event: dict[str, Any]
    kind: str  # what it stands for in the mix: pos_sale, late_sale, ecom_sale, return, receipt_store, ...
    duplicate: bool = False

    @property
    def lines(self) -> int:
        return len(self.event["lines"])


class HoldRequest(NamedTuple):
    reservation_id: str
    location_id: str
    lines: tuple[tuple[str, int], ...]
    ttl_seconds: int
    flash: bool


class Release(NamedTuple):
    reservation_id: str


class _Hold:
    __slots__ = ("flash", "lines", "location", "plan", "rid", "status")

    def __init__(self, rid: str, location: str, lines: tuple[tuple[str, int], ...], plan: str, flash: bool) -> None:
        self.rid, self.location, self.lines, self.plan, self.flash = rid, location, lines, plan, flash
        self.status = "pending"


def stamp(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Day:
    def __init__(self, profile: Profile, *, seed: int, tag: str, start_ms: int) -> None:
        self.profile = profile
        self.rng = random.Random(seed)
        #: holds draw from their own stream: how fast the API answers does not change the stores' traffic
        self.hold_rng = random.Random(seed * 7_919 + 1)
        self.tag = tag
        self.start_ms = start_ms
        self.book = Book()
        self.zipf = catalog.Zipf(profile.skus, profile.zipf)  # the web's catalog
        self.store_zipf = catalog.Zipf(min(profile.store_assortment, profile.skus), profile.zipf)  # a store's range
        self.stores = [catalog.store(tag, i) for i in range(profile.stores)]
        self.dcs = [catalog.dc(tag, i) for i in range(profile.dcs)]
        self.flash = [catalog.flash_sku(i) for i in range(profile.flash_skus)]
        self.store_weights = list(itertools.accumulate(1 / math.sqrt(i + 1) for i in range(profile.stores)))
        self._ids = itertools.count()
        self._last_ms = start_ms
        self._queue: list[tuple[float, int, str, Any]] = []  # (due at, seq, kind, action)
        self._seq = itertools.count()
        self.lines_emitted = 0
        self.mix: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind → [events, lines]
        self.opening: dict[tuple[str, str], int] = {}
        self.opened: dict[str, list[str]] = defaultdict(list)  # store → SKUs it has touched, in order
        self._opening_batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.reorder: dict[str, dict[str, int]] = defaultdict(dict)  # store → sku → qty wanted
        self.dc_low: dict[str, set[str]] = defaultdict(set)
        self.dc_seed: dict[str, int] = {}
        self.holds_by_id: dict[str, _Hold] = {}
        self.offline: dict[str, list[Produce]] = {}
        self._counts_due = 0.0
        self._counted_s = 0.0
        self._now_s = 0.0
        self._last_transfer_s = self._last_po_s = 0.0
        expected_lines = profile.lines_per_s * profile.mean_rate * profile.duration_s
        self._demand = expected_lines * 1.2 / max(1, profile.stores)  # units one store sells of the rank-0 share
        self._plan_offline_tills()
        self._plan_flash_restocks()

    # ---- time and ids -------------------------------------------------------------------------
    def business_ms(self, now_s: float) -> int:
        at = self.start_ms + int(now_s * self.profile.compression * 1000)
        self._last_ms = max(at, self._last_ms + 1)
        return self._last_ms

    def _id(self, kind: str) -> str:
        return f"{self.tag}-{kind}-{next(self._ids)}"

    def _later(self, due_s: float, action: Any, kind: str) -> None:
        heapq.heappush(self._queue, (due_s, next(self._seq), kind, action))

    def _record(self, produce: Produce) -> None:
        counted = self.mix[produce.kind]
        counted[0] += 1
        counted[1] += produce.lines

    def _emit(self, out: list[Any], produce: Produce) -> None:
        out.append(produce)
        self._record(produce)
        if produce.duplicate:
            return
        self.lines_emitted += produce.lines
        if self.rng.random() < self.profile.duplicate_share:
            redelivered = produce._replace(kind="duplicate", duplicate=True)
            self._later(self._now_s + self.rng.uniform(0.2, 3.0), redelivered, "duplicate")

    # ---- opening stock (before the load) ------------------------------------------------------
    def seed(self) -> list[Produce]:
        """Policies and DC stock, stamped an hour before the day: produced and applied before the load."""
        out: list[Produce] = []
        before = stamp(self.start_ms - 3_600_000)
        self._now_s = 0.0
        for location in self.dcs:
            policy_lines: list[dict[str, Any]] = []
            for rank in range(self.profile.skus):
                if self.rng.random() < self.profile.safety_share:
                    policy_lines.append({"sku": catalog.sku(rank), "safety_stock": self.profile.safety_stock})
                    self.book.policy(location, catalog.sku(rank), self.profile.safety_stock)
            for chunk in catalog.chunks(policy_lines, MAX_LINES):
                out.append(Produce(topics.POLICIES, location, {
                    "event_id": self._id("pol"), "type": "policy", "occurred_at": before,
                    "location_id": location, "lines": chunk}, "seed_policy"))
            lines: list[dict[str, Any]] = []
            for rank in range(self.profile.skus):
                qty = self._dc_stock(rank)
                lines.append({"sku": catalog.sku(rank), "qty": qty})
                self.dc_seed[catalog.sku(rank)] = qty
            lines += [{"sku": sku, "qty": self.profile.flash_stock} for sku in self.flash]
            for line in lines:
                self.book.move(location, line["sku"], on_hand=line["qty"])
            for sku in self.flash:
                self.book.flash[(location, sku)].supply.append((0.0, self.profile.flash_stock))
            for chunk in catalog.chunks(lines, MAX_LINES):
                out.append(Produce(topics.RECEIPTS, location, {
                    "event_id": self._id("seed"), "type": "receipt", "occurred_at": before,
                    "location_id": location, "po_id": self._id("po"), "lines": chunk}, "seed_receipt"))
        for produce in out:
            self._record(produce)
        return out

    def _dc_stock(self, rank: int) -> int:
        carried = rank < len(self.store_zipf.cumulative)
        pos = self._demand * self.profile.stores * (self.store_zipf.share(rank) if carried else 0) / self.profile.dcs
        ecom = self.profile.holds_per_s * self.profile.duration_s * 2 * self.zipf.share(rank) / self.profile.dcs
        return min(1_000_000, math.ceil(pos * 0.5 + ecom * 2) + 10)

    def open_stores(self) -> list[Produce]:
        """Each store's opening count of its range (the ``store_assortment`` best sellers), before the load."""
        out: list[Produce] = []
        for location in self.stores:
            for rank in range(min(self.profile.store_assortment, self.profile.skus)):
                self._open(location, catalog.sku(rank), rank)
        self._flush_opening(out)
        return out

    def _open(self, location: str, sku: str, rank: int) -> None:
        """A store position's opening stock: a count as of 1 ms before the day (a count is "as of" its time,
        so sales after it stay on top whichever is applied first)."""
        qty = max(2, math.ceil(self._demand * self.store_zipf.share(rank) * 1.3 * self.rng.uniform(0.6, 1.4)))
        self.opening[(location, sku)] = qty
        self.opened[location].append(sku)
        self.book.count(location, sku, qty)
        self._opening_batch[location].append({"sku": sku, "qty": qty})

    def _flush_opening(self, out: list[Any]) -> None:
        for location, lines in self._opening_batch.items():
            for chunk in catalog.chunks(lines, MAX_LINES):
                produce = Produce(topics.ADJUSTMENTS, location, {
                    "event_id": self._id("open"), "type": "adjustment", "occurred_at": stamp(self.start_ms - 1),
                    "location_id": location, "mode": "count", "source": f"wms:{location}:opening-stock",
                    "lines": chunk}, "seed_count")
                self._record(produce)
                out.append(produce)
        self._opening_batch.clear()

    # ---- the day's traffic --------------------------------------------------------------------
    def advance(self, now_s: float, target_lines: int) -> list[Any]:
        """Everything due by ``now_s``: scheduled actions first, then new traffic until ``target_lines``
        lines have been emitted since the start (duplicates not counted)."""
        self._now_s = now_s
        out: list[Any] = []
        while self._queue and self._queue[0][0] <= now_s:
            _, _, _, action = heapq.heappop(self._queue)
            self._run(out, action)
        self._cycle_counts(out, now_s)
        if now_s - self._last_transfer_s >= 1.0:
            self._last_transfer_s = now_s
            self._ship_replenishment(out, now_s)
        if now_s - self._last_po_s >= 2.0:
            self._last_po_s = now_s
            self._dc_purchase_orders(out)
        while self.lines_emitted < target_lines:
            self._basket(out, now_s)
        return out

    def _run(self, out: list[Any], action: Any) -> None:
        if isinstance(action, Produce):
            self._emit(out, action)
        elif isinstance(action, Release):
            out.append(action)
        else:  # a callable that books and emits at its due time
            action(out)

    def _store(self) -> str:
        return self.stores[min(len(self.stores) - 1, self.rng.choices(range(len(self.stores)),
                                                                       cum_weights=self.store_weights)[0])]

    def _basket(self, out: list[Any], now_s: float) -> None:
        """One POS basket at a store: lines within the store's stock (a line out of stock is a lost sale)."""
        location = self._store()
        size = min(40, 1 + int(self.rng.expovariate(1 / max(0.01, self.profile.basket_lines - 1))))
        lines: list[dict[str, Any]] = []
        for rank in self.store_zipf.distinct(self.rng, size):
            sku = catalog.sku(rank)
            qty = 1 if self.rng.random() < 0.85 else self.rng.randint(2, 3)
            if self.book.free((location, sku)) >= qty:
                lines.append({"sku": sku, "qty": qty})
                self.book.move(location, sku, on_hand=-qty)
            self._maybe_reorder(location, sku)
        if not lines:
            self.lines_emitted += 1  # a customer who found nothing still used the till
            return
        till = self.rng.randint(1, 12)
        event = {"event_id": self._id("pos"), "type": "sale", "occurred_at": stamp(self.business_ms(now_s)),
                 "location_id": location, "channel": "pos", "source": f"pos:{location}:till-{till}", "lines": lines}
        produce = Produce(topics.SALES, location, event, "pos_sale")
        if location in self.offline and till % 2:
            self.offline[location].append(produce._replace(kind="late_sale"))
        else:
            self._emit(out, produce)
        if self.rng.random() < self.profile.return_share * len(lines):
            self._return(out, now_s)
        if self.rng.random() < self.profile.receipt_share * len(lines):
            self._store_delivery(out, now_s, location)

    def _maybe_reorder(self, location: str, sku: str) -> None:
        opening = self.opening[(location, sku)]
        have = self.book.positions[(location, sku)]
        if have.on_hand + have.in_transit < max(1, opening * 0.3) and sku not in self.reorder[location]:
            self.reorder[location][sku] = opening - have.on_hand - have.in_transit

    def _return(self, out: list[Any], now_s: float) -> None:
        location = self._store()
        lines: list[dict[str, Any]] = []
        for rank in self.store_zipf.distinct(self.rng, self.rng.randint(1, 2)):
            sku = catalog.sku(rank)
            damaged = self.rng.random() < self.profile.damaged_share
            lines.append({"sku": sku, "qty": 1, "disposition": "damaged" if damaged else "sellable"})
            self.book.move(location, sku, on_hand=0 if damaged else 1, damaged=1 if damaged else 0)
        self._emit(out, Produce(topics.RETURNS, location, {
            "event_id": self._id("ret"), "type": "return", "occurred_at": stamp(self.business_ms(now_s)),
            "location_id": location, "source": f"pos:{location}:service-desk", "lines": lines}, "return"))

    def _store_delivery(self, out: list[Any], now_s: float, location: str) -> None:
        """A vendor's direct store delivery (DSD): a few SKUs by the case."""
        lines: list[dict[str, Any]] = []
        for rank in self.store_zipf.distinct(self.rng, self.rng.randint(2, 6)):
            sku = catalog.sku(rank)
            qty = self.rng.choice((6, 12, 24))
            lines.append({"sku": sku, "qty": qty})
            self.book.move(location, sku, on_hand=qty)
        self._emit(out, Produce(topics.RECEIPTS, location, {
            "event_id": self._id("dsd"), "type": "receipt", "occurred_at": stamp(self.business_ms(now_s)),
            "location_id": location, "po_id": self._id("dsd-po"), "lines": lines}, "receipt_store"))

    # ---- replenishment: DC → store transfers, purchase orders at the DCs -------------------------
    def _ship_replenishment(self, out: list[Any], now_s: float) -> None:
        for store_index, location in enumerate(self.stores):
            wanted = self.reorder.pop(location, None)
            if not wanted:
                continue
            origin = self.dcs[store_index % len(self.dcs)]
            lines: list[dict[str, Any]] = []
            for sku, qty in wanted.items():
                qty = min(qty, self.book.free((origin, sku)))
                if qty <= 0:
                    self.dc_low[origin].add(sku)
                    continue
                lines.append({"sku": sku, "qty": qty})
                self.book.move(origin, sku, on_hand=-qty)
                self.book.move(location, sku, in_transit=qty)
                if self.book.free((origin, sku)) < self.dc_seed[sku] * 0.2:
                    self.dc_low[origin].add(sku)
            for chunk in catalog.chunks(lines, MAX_LINES):
                self._transfer(out, now_s, origin, location, chunk)

    def _transfer(self, out: list[Any], now_s: float, origin: str, destination: str, lines: list[dict[str, Any]],
                  ) -> None:
        transfer_id = self._id("T")
        shipped = {"event_id": f"{transfer_id}-shipped", "type": "transfer",
                   "occurred_at": stamp(self.business_ms(now_s)), "transfer_id": transfer_id, "status": "shipped",
                   "from_location_id": origin, "to_location_id": destination, "lines": lines}
        self._emit(out, Produce(topics.TRANSFERS, origin, shipped, "transfer_shipped"))
        delay = min(10.0, max(1.0, self.profile.duration_s * self.rng.uniform(0.02, 0.06)))

        def received(later: list[Any]) -> None:
            for line in lines:
                self.book.move(destination, line["sku"], on_hand=line["qty"], in_transit=-line["qty"])
            body = {**shipped, "event_id": f"{transfer_id}-received", "status": "received",
                    "occurred_at": stamp(self.business_ms(self._now_s))}
            self._emit(later, Produce(topics.TRANSFERS, origin, body, "transfer_received"))

        self._later(now_s + delay, received, "received")

    def _dc_purchase_orders(self, out: list[Any]) -> None:
        for location, skus in self.dc_low.items():
            lines: list[dict[str, Any]] = [{"sku": sku, "qty": self.dc_seed[sku]} for sku in sorted(skus)]
            skus.clear()
            for line in lines:
                self.book.move(location, line["sku"], on_hand=line["qty"])
            for chunk in catalog.chunks(lines, MAX_LINES):
                self._emit(out, Produce(topics.RECEIPTS, location, {
                    "event_id": self._id("rcv"), "type": "receipt", "occurred_at": stamp(self.business_ms(self._now_s)),
                    "location_id": location, "po_id": self._id("po"), "lines": chunk}, "receipt_dc"))

    # ---- counts and offline tills -------------------------------------------------------------
    def _cycle_counts(self, out: list[Any], now_s: float) -> None:
        per_wall_s = self.profile.counts_per_store_hour * len(self.stores) * self.profile.compression / 3600
        self._counts_due += per_wall_s * max(0.0, now_s - self._counted_s)
        self._counted_s = now_s
        while self._counts_due >= 1:
            self._counts_due -= 1
            self._count(out, now_s, self._store(), [])

    def _count(self, out: list[Any], now_s: float, location: str, must: list[str]) -> None:
        """A cycle count of the truth: the store's on_hand as of now, sales not yet received included."""
        opened = self.opened[location] if not must else []
        chosen = list(dict.fromkeys(must + self.rng.sample(opened, min(len(opened), self.profile.count_skus))))
        chosen = chosen[:max(self.profile.count_skus, len(must))]
        if not chosen:
            return
        lines = [{"sku": sku, "qty": max(0, self.book.positions[(location, sku)].on_hand)} for sku in chosen]
        self._emit(out, Produce(topics.ADJUSTMENTS, location, {
            "event_id": self._id("cnt"), "type": "adjustment", "occurred_at": stamp(self.business_ms(now_s)),
            "location_id": location, "mode": "count", "source": f"wms:{location}:cycle-count", "lines": lines},
            "count_cycle"))

    def _plan_offline_tills(self) -> None:
        chosen = self.rng.sample(self.stores, max(1, round(len(self.stores) * self.profile.offline_share)))
        length = max(1.5, self.profile.duration_s * 0.06)
        for location in chosen:
            start = self.profile.duration_s * self.rng.uniform(0.1, 0.75)
            self._later(start, self._offline_starts(location), "offline")
            self._later(start + length / 2, self._offline_count(location), "offline")
            self._later(start + length, self._offline_ends(location), "offline")

    def _offline_starts(self, location: str) -> Any:
        def run(out: list[Any]) -> None:
            self.offline[location] = []
        return run

    def _offline_count(self, location: str) -> Any:
        def run(out: list[Any]) -> None:  # the count names the SKUs the offline till has sold
            buffered = [line["sku"] for produce in self.offline.get(location, []) for line in produce.event["lines"]]
            self._count(out, self._now_s, location, list(dict.fromkeys(buffered)))
        return run

    def _offline_ends(self, location: str) -> Any:
        def run(out: list[Any]) -> None:  # the till comes back and replays its sales, older than the count
            for produce in self.offline.pop(location, []):
                self._emit(out, produce)
        return run

    def _plan_flash_restocks(self) -> None:
        for spike in self.profile.spikes:
            self._later(self.profile.duration_s * (spike.at + spike.length / 2), self._flash_restock, "restock")

    def _flash_restock(self, out: list[Any]) -> None:
        qty = max(1, self.profile.flash_stock // 2)
        for location in self.dcs:
            for sku in self.flash:
                self.book.move(location, sku, on_hand=qty)
                self.book.flash[(location, sku)].supply.append((self._now_s, qty))
            if self.flash:
                self._emit(out, Produce(topics.RECEIPTS, location, {
                    "event_id": self._id("restock"), "type": "receipt",
                    "occurred_at": stamp(self.business_ms(self._now_s)), "location_id": location,
                    "po_id": self._id("po"), "lines": [{"sku": sku, "qty": qty} for sku in self.flash]}, "receipt_dc"))

    # ---- ecommerce holds ----------------------------------------------------------------------
    def holds(self, count: int, now_s: float) -> list[HoldRequest]:
        """``count`` ecommerce holds at the DCs. Ordinary ones stay within the stock the simulator believes
        free; during a flash sale a share goes to the doorbusters, far beyond their stock."""
        self._now_s = now_s
        requests = []
        flash_share = self.profile.flash_hold_share if self.profile.spike(now_s / self.profile.duration_s) > 1 else 0
        for _ in range(count):
            location = self.hold_rng.choice(self.dcs)
            flash = bool(self.flash) and self.hold_rng.random() < flash_share
            if flash:
                lines: tuple[tuple[str, int], ...] = ((self.hold_rng.choice(self.flash), self.hold_rng.randint(1, 2)),)
            else:
                wanted = [(catalog.sku(rank), 1 if self.hold_rng.random() < 0.9 else 2)
                          for rank in self.zipf.distinct(self.hold_rng, self.hold_rng.randint(1, 3))]
                lines = tuple((sku, qty) for sku, qty in wanted if self.book.free((location, sku)) >= qty)
                if not lines:
                    self.mix["hold_not_asked"][0] += 1
                    continue
            roll = self.hold_rng.random()
            plan = "sell" if roll < self.profile.hold_sold else (
                "release" if roll < self.profile.hold_sold + self.profile.hold_released else "expire")
            ttl = self.profile.expiring_ttl_s if plan == "expire" else self.profile.hold_ttl_s
            rid = self._id("flash" if flash else "hold")
            self.holds_by_id[rid] = _Hold(rid, location, lines, plan, flash)
            self.book.claim(location, lines)
            requests.append(HoldRequest(rid, location, lines, ttl, flash))
        return requests

    def decided(self, rid: str, status: str, now_s: float, expires_s: float | None = None) -> None:
        """The API's answer to a hold: ``held`` (with its expiry, run time), ``rejected``, ``refused`` (a 4xx:
        never produced), or ``unknown`` (never decided, as far as the simulator could learn: its positions'
        reserved cannot be known)."""
        hold = self.holds_by_id[rid]
        hold.status = status
        if status in ("rejected", "refused"):
            self.book.claim(hold.location, hold.lines, -1)
            return
        if status != "held":
            self.book.uncertain.update((hold.location, sku) for sku, _ in hold.lines)
            return
        self.book.reserve(hold.location, hold.lines)
        if hold.flash:
            for sku, qty in hold.lines:
                self.book.flash[(hold.location, sku)].accepted.append((now_s, qty, rid))
        if hold.plan == "sell":
            self._later(now_s + self.hold_rng.uniform(0.3, 4.0), self._checkout(hold), "checkout")
        elif hold.plan == "release":
            self._later(now_s + self.hold_rng.uniform(0.5, 6.0), Release(rid), "release")
        elif expires_s is not None:
            self._later(expires_s, self._expiry(hold, expires_s), "expiry")

    def _checkout(self, hold: _Hold) -> Any:
        def run(out: list[Any]) -> None:
            for sku, qty in hold.lines:
                self.book.move(hold.location, sku, on_hand=-qty)
            self.book.reserve(hold.location, hold.lines, -1)
            self.book.claim(hold.location, hold.lines, -1)
            hold.status = "sold"
            self._emit(out, Produce(topics.SALES, hold.location, {
                "event_id": self._id("ecom"), "type": "sale", "occurred_at": stamp(self.business_ms(self._now_s)),
                "location_id": hold.location, "channel": "ecom", "reservation_id": hold.rid,
                "source": "ecom:checkout", "lines": [{"sku": sku, "qty": qty} for sku, qty in hold.lines]},
                "ecom_sale"))
        return run

    def _expiry(self, hold: _Hold, expires_s: float) -> Any:
        for sku, _ in hold.lines:
            if hold.flash:
                self.book.flash[(hold.location, sku)].freed[hold.rid] = expires_s

        def run(out: list[Any]) -> None:
            if hold.status == "held":
                hold.status = "expired"
                self.book.reserve(hold.location, hold.lines, -1)
                self.book.claim(hold.location, hold.lines, -1)
        return run

    def releasing(self, rid: str, now_s: float) -> None:
        """A release is being asked for: from now on its stock may be someone else's."""
        hold = self.holds_by_id[rid]
        for sku, _ in hold.lines:
            if hold.flash:
                self.book.flash[(hold.location, sku)].freed[rid] = now_s

    def released(self, rid: str, status: str) -> None:
        """The API's answer to DELETE: the hold's final status (``released``, or how it had ended)."""
        hold = self.holds_by_id[rid]
        if status in ("released", "expired") and hold.status == "held":
            self.book.reserve(hold.location, hold.lines, -1)
            self.book.claim(hold.location, hold.lines, -1)
            hold.status = status
        elif status != hold.status:
            hold.status = "unknown"
            self.book.uncertain.update((hold.location, sku) for sku, _ in hold.lines)

    def close(self, now_s: float) -> list[Any]:
        """The end of the load: tills back online and trucks unloaded (their events are produced). Holds
        whose checkout or release was still to come stay held, as the expected ``reserved`` says; holds
        left to expire expire at their time (:meth:`settle`)."""
        self._now_s = now_s
        out: list[Any] = []
        for location in list(self.offline):
            self._offline_ends(location)(out)
        pending, self._queue = self._queue, []
        for entry in sorted(pending):
            if entry[2] == "received":
                self._run(out, entry[3])
            elif entry[2] == "expiry":
                heapq.heappush(self._queue, entry)
        return out

    def expiring_until(self) -> float:
        """Run time by which every hold left to expire has expired (0 if none)."""
        return max((entry[0] for entry in self._queue if entry[2] == "expiry"), default=0.0)

    def left_to_expire(self) -> list[str]:
        """Reservation ids of the holds still held that are to expire (before :meth:`settle`)."""
        return [hold.rid for hold in self.holds_by_id.values() if hold.status == "held" and hold.plan == "expire"]

    def settle(self) -> None:
        """Book every expiry still due (after :meth:`close`, once the engine has had time to expire them).
        Nothing else is left to run: a checkout or release decided after the close never happens."""
        out: list[Any] = []
        while self._queue:
            _, _, kind, action = heapq.heappop(self._queue)
            if kind == "expiry":
                self._run(out, action)

    def hold_outcomes(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"ordinary": defaultdict(int), "doorbuster": defaultdict(int)}
        for hold in self.holds_by_id.values():
            out["doorbuster" if hold.flash else "ordinary"][hold.status] += 1
        return {kind: dict(counts) for kind, counts in out.items()}
