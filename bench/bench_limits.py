"""`make bench` (rate limits): a rate-limited backfill, with live sync beside it, against its limits.

A table of ITEMS items of ~700 B (one write unit each) on moto's server, behind tests/aws_proxy.py so
that DynamoDB reports the capacity AWS would charge. `ferry table` runs while a writer changes the
source at a steady rate: first with no limit (what this server can take: the ceiling), then with
`--max-write-units W` for each W, then `--max-read-units R` on a smaller table. The backfill's write
(read) rate is the units the proxy reported for BatchWriteItem (Scan) over the backfill (first to last
checkpoint), as a ratio to the limit, and to the lower of the limit and the ceiling. Live-sync lag:
every 10th write made while the backfill runs is watched until it is in the target.
Writes bench/results/limits.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers import BIN, aws_proxy, local_services  # noqa: E402
from tables import by_key, create_table, put_items, scan_all, simple_items  # noqa: E402


ITEMS = int(os.environ.get("BENCH_LIMIT_ITEMS", 20_000))
WRITE_LIMITS = [float(n) for n in os.environ.get("BENCH_WRITE_LIMITS", "400,1000").split(",")]
READ_LIMIT = float(os.environ.get("BENCH_READ_LIMIT", 20))
READ_ITEMS = int(os.environ.get("BENCH_READ_ITEMS", 8_000))
WRITES_PER_SECOND = 20


def consumed(proxy: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{proxy}/proxy-api/consumed").read())


class Writer(threading.Thread):
    """Updates and inserts at a steady rate; every 10th write is watched until the target has it."""

    def __init__(self, table: str, items: int):
        super().__init__(daemon=True)
        self.table, self.items = table, items
        self.stop, self.watching, self.lags = threading.Event(), threading.Event(), []

    def run(self) -> None:
        source, target = boto3.client("dynamodb"), boto3.client("dynamodb")
        n = 0
        while not self.stop.is_set():
            n += 1
            key = {"pk": {"S": f"k{(n * 7919) % self.items:07d}"}}
            value = {"S": f"live-{n}"}
            source.put_item(TableName=self.table, Item={**key, "v": value})
            if n % 10 == 0 and self.watching.is_set():  # the backfill and live sync are running
                threading.Thread(target=self.watch, args=(target, key, value, time.monotonic()), daemon=True).start()
            time.sleep(1 / WRITES_PER_SECOND)

    def watch(self, target, key: dict, value: dict, written: float) -> None:
        while time.monotonic() - written < 60 and not self.stop.is_set():
            try:
                item = target.get_item(TableName="dst", Key=key, ConsistentRead=True).get("Item", {})
            except target.exceptions.ResourceNotFoundException:  # ferry has not created the target yet
                item = {}
            if item.get("v") == value:
                self.lags.append(time.monotonic() - written)
                return
            time.sleep(0.05)


def limited_backfill(services, proxy: str, table: str, items: int, option: str | None, limit: float | None,
                     operation: str) -> dict:
    """One `ferry table` with at most one limit, a writer beside it; the achieved rate of `operation`."""
    dynamodb = boto3.client("dynamodb")
    for name in ("dst", "ferry-state"):
        if name in dynamodb.list_tables()["TableNames"]:
            dynamodb.delete_table(TableName=name)
    from ferry.config import TableJob
    from ferry.state import StateStore

    state, migration_id = StateStore(dynamodb, "ferry-state"), TableJob(source=table, target="dst").migration_id
    writer = Writer(table, items)
    env = {**os.environ, **services.prefect_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy}
    run = subprocess.Popen([str(BIN / "ferry"), "table", table, "dst", "--create-target", "--segments", "8",
                            "--page-size", "200", *([option, str(limit)] if option else []), "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer.start()
    started = finished = None
    while run.poll() is None:
        migration = state.load(migration_id) if state.exists() else None
        if migration and migration.copied and started is None:
            started, first_units = time.monotonic(), consumed(proxy).get(operation, 0.0)
            writer.watching.set()
        if migration and migration.backfilled and finished is None:
            finished, last_units = time.monotonic(), consumed(proxy).get(operation, 0.0)
            writer.watching.clear()
        time.sleep(0.1)
    writer.stop.set()
    out, err = run.communicate()
    if run.returncode != 0:
        raise SystemExit(f"ferry table failed: {err[-2000:]}")
    achieved = (last_units - first_units) / (finished - started)
    lags = sorted(writer.lags)
    return {"option": option or "no limit", "limit": limit, "operation": operation,
            "achieved_units_per_s": round(achieved, 1),
            "achieved_over_limit": round(achieved / limit, 3) if limit else None,
            "backfill_seconds": round(finished - started, 1),
            "live_sync_lag_p50_s": round(statistics.median(lags), 3) if lags else None,
            "live_sync_lag_p99_s": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3) if lags else None,
            "lag_samples": len(lags), "verified": json.loads(out.strip().splitlines()[-1])["verified"]}


def main() -> None:
    with local_services() as services, aws_proxy(services.moto) as proxy:
        dynamodb = boto3.client("dynamodb")
        for table, count in (("src", ITEMS), ("src-reads", READ_ITEMS)):
            create_table(dynamodb, table)
            put_items(dynamodb, table, simple_items(count, size=680))
        ceiling = limited_backfill(services, proxy, "src", ITEMS, None, None, "BatchWriteItem")
        runs = [ceiling] + [limited_backfill(services, proxy, "src", ITEMS, "--max-write-units", limit,
                                             "BatchWriteItem") for limit in WRITE_LIMITS]
        for r in runs[1:]:
            r["achieved_over_reachable"] = round(r["achieved_units_per_s"] /
                                                 min(r["limit"], ceiling["achieved_units_per_s"]), 3)
        runs.append(limited_backfill(services, proxy, "src-reads", READ_ITEMS, "--max-read-units", READ_LIMIT,
                                     "Scan"))
        # the writer ran past the last run's end: the poller brings in its last writes
        subprocess.run([str(BIN / "ferry"), "sync", "table", "src-reads", "dst", "--until-idle", "1", "--json"],
                       env={**os.environ, **services.prefect_env}, capture_output=True, check=True)
        equal = by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src-reads"), "pk")
    result = {"items": ITEMS, "writes_per_second_meanwhile": WRITES_PER_SECOND, "runs": runs}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "limits.json").write_text(json.dumps(result, indent=2))
    for r in runs:
        against = (f" = {r['achieved_over_limit']:.2f} of the limit" if r["limit"] else " (this server's ceiling)")
        reachable = (f", {r['achieved_over_reachable']:.2f} of min(limit, ceiling)" if "achieved_over_reachable" in r
                     else "")
        print(f"{r['option']} {r['limit'] or ''}: {r['operation']} {r['achieved_units_per_s']:g} units/s{against}"
              f"{reachable} over {r['backfill_seconds']} s; live-sync lag p50 {r['live_sync_lag_p50_s']} s, "
              f"p99 {r['live_sync_lag_p99_s']} s ({r['lag_samples']} samples); verified {r['verified']}")
    print(f"target equal to source after the last run and a final `ferry sync table`: {equal}")


if __name__ == "__main__":
    main()
