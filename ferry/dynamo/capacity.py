"""Rate limits that hold: what the backfill may take from the source's reads and the target's writes.

DynamoDB charges capacity units after the fact: a Scan page or a PutItem says what it cost in its
`ConsumedCapacity` (asked for with ReturnConsumedCapacity=TOTAL). So the limiter is a token bucket
that may go into debt: a caller waits until the bucket is not in debt, makes its request, then pays
what the response says it cost. Over any stretch of time the units paid stay within the limit plus
one request's worth and a burst of one second's worth (or of the dearest request, if that is more),
whatever the page sizes. Every segment of a run shares
one limiter per side; live sync never goes through it (it must keep up), so the backfill gets what
the limit leaves.

The bucket's state is three numbers behind `Budget`, so a limiter shared by several processes (the
coming scale-out) can keep them somewhere shared instead of in memory without changing its callers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

EPSILON = 1e-6  # units: a debt this small is rounding, not debt


@dataclass
class Budget:
    """A token bucket in capacity units: `rate` per second, holding at most `burst`, allowed into debt."""

    rate: float
    burst: float
    tokens: float = 0.0
    updated: float = 0.0

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_seconds(self, now: float) -> float:
        """How long until the bucket is out of debt (0: go now)."""
        self.refill(now)
        return 0.0 if self.tokens >= -EPSILON else -self.tokens / self.rate


@dataclass
class RateLimiter:
    """Limits a side to `units_per_second` capacity units; None means unlimited. Thread-safe."""

    units_per_second: float | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    refresh: Callable[[], float] | None = None  # re-reads the limit (a share of provisioned capacity)
    refresh_every: float = 60.0
    consumed: float = 0.0  # units paid since the start
    started: float = field(default=0.0)
    _refreshed: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _budget: Budget | None = field(default=None, repr=False)
    _dearest: float = field(default=0.0, repr=False)  # the most a single request has cost

    def __post_init__(self):
        self.started = self._refreshed = self.clock()
        if self.units_per_second is not None:
            self._budget = Budget(self.units_per_second, burst=self.units_per_second, tokens=0.0, updated=self.started)

    def set_rate(self, units_per_second: float) -> None:
        """A new limit (provisioned capacity changed under auto scaling): effective at once."""
        with self._lock:
            self.units_per_second = units_per_second
            if self._budget is None:
                self._budget = Budget(units_per_second, units_per_second, 0.0, self.clock())
            else:
                self._budget.refill(self.clock())
                self._budget.rate = units_per_second
                self._budget.burst = max(units_per_second, self._dearest)

    def wait(self) -> None:
        """Block until a request may be made (the bucket is not in debt)."""
        if self.refresh is not None and self.clock() - self._refreshed >= self.refresh_every:
            self._refreshed = self.clock()
            self.set_rate(self.refresh())  # auto scaling changes provisioned capacity
        while True:
            with self._lock:
                delay = 0.0 if self._budget is None else self._budget.wait_seconds(self.clock())
            if delay <= 0:
                return
            self.sleep(delay)

    def pay(self, units: float) -> None:
        """Account for what a request cost (from its ConsumedCapacity)."""
        with self._lock:
            self.consumed += units
            if self._budget is not None:
                self._budget.refill(self.clock())
                self._budget.tokens -= units
                # a request dearer than a second's worth (a 1 MB consistent Scan page under a low limit)
                # must be able to save up for itself while others are in flight, or the limit is never reached
                self._dearest = max(self._dearest, units)
                self._budget.burst = max(self._budget.rate, self._dearest)

    def rate(self) -> float:
        """Units per second paid since the start: what progress displays show against the limit."""
        elapsed = self.clock() - self.started
        return self.consumed / elapsed if elapsed > 0 else 0.0


def consumed_units(response: dict) -> float:
    """The capacity units a response says its request consumed (0 when it does not say)."""
    consumed = response.get("ConsumedCapacity")
    if isinstance(consumed, list):
        return sum(c.get("CapacityUnits", 0.0) for c in consumed)
    return (consumed or {}).get("CapacityUnits", 0.0)


def write_units(item: dict) -> float:
    """The write capacity units a put of `item` costs: one per started KB of its size."""
    return float(max(1, -(-item_size(item) // 1024)))


def item_size(item: dict) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values (numbers about one byte per
    two digits, a small overhead per list, map and set element)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: dict) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.strip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())  # M


def provisioned_units(description: dict, side: str) -> float | None:
    """The table's provisioned read or write capacity; None for an on-demand table."""
    if description.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST":
        return None
    units = description.get("ProvisionedThroughput", {}).get(f"{side.capitalize()}CapacityUnits", 0)
    return float(units) or None


def limiter_for(units: float | None, percent: float | None, describe: Callable[[], dict], side: str) -> RateLimiter:
    """The limiter of one side: fixed units, or a share of provisioned capacity re-read every minute."""
    if percent is None:
        return RateLimiter(units)
    share = percent / 100

    def current() -> float:
        return max(1.0, (provisioned_units(describe(), side) or 0.0) * share)

    return RateLimiter(current(), refresh=current)


def configured_rate(units: float | None, percent: float | None, description: dict, side: str) -> float | None:
    """The limit a job sets on one side right now (None: unlimited)."""
    if percent is not None:
        return (provisioned_units(description, side) or 0.0) * percent / 100
    return units


def backfill_seconds(items: int, size_bytes: int, read_rate: float | None, write_rate: float | None) -> float | None:
    """How long a backfill of `items` totalling `size_bytes` takes at these limits (None: no limit
    set). Writes cost a unit per started KB of each item; an eventually consistent scan half a unit
    per 4 KB read."""
    if not items or (read_rate is None and write_rate is None):
        return None
    average = size_bytes / items
    seconds = [items * max(1, -(-int(average) // 1024)) / write_rate] if write_rate else []
    seconds += [size_bytes / 4096 * 0.5 / read_rate] if read_rate else []
    return max(seconds)
