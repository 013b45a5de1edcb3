"""The rate limiter's arithmetic, on a fake clock: what it lets through stays within the limit."""

from __future__ import annotations

import pytest

from ferry.dynamo.capacity import RateLimiter, consumed_units


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def run(limiter: RateLimiter, clock: FakeClock, seconds: float, cost: float, work: float = 0.001) -> float:
    """Requests of `cost` units back to back for `seconds` of fake time; units paid."""
    end = clock.now + seconds
    paid = 0.0
    while clock.now < end:
        limiter.wait()
        clock.now += work  # the request itself
        limiter.pay(cost)
        paid += cost
    return paid


@pytest.mark.parametrize("cost", [1.0, 7.5, 128.0], ids=["put", "small-page", "full-scan-page"])
def test_units_paid_stay_within_the_limit_whatever_each_request_costs(cost):
    clock = FakeClock()
    limiter = RateLimiter(400, clock=clock, sleep=clock.sleep)

    paid = run(limiter, clock, seconds=60, cost=cost)

    # the limit over 60 s, plus at most one request's worth and one second's burst beyond it
    assert 400 * 60 - cost <= paid <= 400 * 61 + cost
    assert limiter.rate() == pytest.approx(400, rel=0.03)


def test_a_new_limit_applies_at_once():
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    run(limiter, clock, seconds=10, cost=5)
    before = limiter.consumed

    limiter.set_rate(300)
    paid = run(limiter, clock, seconds=10, cost=5)

    assert 300 * 10 - 5 <= paid <= 300 * 11 + 5 and before <= 100 * 11 + 5


def test_no_limit_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        limiter.wait()
        limiter.pay(1000)
    assert clock.now == 1000.0 and limiter.consumed == 1_000_000


def test_consumed_units_read_from_responses():
    assert consumed_units({"ConsumedCapacity": {"TableName": "t", "CapacityUnits": 2.5}}) == 2.5
    assert consumed_units({"ConsumedCapacity": [{"CapacityUnits": 1.0}, {"CapacityUnits": 3.0}]}) == 4.0
    assert consumed_units({}) == 0.0


def test_requests_dearer_than_a_seconds_worth_and_slow_to_answer_still_reach_the_limit():
    # 35-unit consistent Scan pages under a 20 units/s limit, each taking 1.5 s to come back: while a
    # page is in flight the bucket must be able to save up a whole page, not just a second's worth
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)

    paid = run(limiter, clock, seconds=600, cost=35.0, work=1.5)

    assert 0.97 * 20 * 600 <= paid <= 20 * 600 + 2 * 35
