"""Rate limits that hold, measured the way AWS charges: through a proxy that reports real units."""

from __future__ import annotations

import subprocess
import time

from conftest import FERRY
from ferry.state import StateStore
from tables import MIGRATION, create_table, put_items, simple_items

ITEMS = 2_400
LIMIT = 120  # write units per second; every item here is ~700 bytes: one unit
SEGMENTS, PAGE = 4, 100


def test_the_backfill_stays_within_its_write_limit(dynamodb, run_ferry, capacity_proxy):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS, size=680))
    before = capacity_proxy.consumed().get("BatchWriteItem", 0.0)
    state = StateStore(dynamodb, "ferry-state")
    env = {**run_ferry.env(), "AWS_ENDPOINT_URL_DYNAMODB": capacity_proxy.url}
    run = subprocess.Popen([FERRY, "table", "src", "dst", "--create-target", "--segments", str(SEGMENTS), "--page-size",
                            str(PAGE), "--max-write-units", str(LIMIT), "--json"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = finished = None
    while run.poll() is None:
        migration = state.load(MIGRATION) if state.exists() else None
        if migration and migration.copied and started is None:
            started = time.monotonic()
        if migration and migration.backfilled and finished is None:
            finished = time.monotonic()
        time.sleep(0.05)
    out, err = run.communicate()

    assert run.returncode == 0, err[-2000:]
    units = capacity_proxy.consumed()["BatchWriteItem"] - before
    assert units >= ITEMS  # the proxy saw the backfill's writes, at a unit each at least
    # An upper bound only: each segment's first page was paid before `started`, plus a second's burst.
    assert units - SEGMENTS * PAGE - LIMIT <= LIMIT * 1.1 * (finished - started), \
        f"{units:.0f} units in {finished - started:.1f}s: above {LIMIT} units/s"
