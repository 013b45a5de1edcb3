"""`make bench` (tables): Ferry against the per-item script it replaces and against the server's limit.

One moto server (its own process) and one Prefect server, as in production use. On the same
30,000-item table (~1 KB items), in one run:
  (a) baseline: the script users write today: one sequential Scan, PutItem per item, each page's
      puts concurrent;
  (b) the server's limit: a scan-only pass plus a BatchWriteItem-only pass of pre-built batches;
  (c) `ferry table --no-verify` (the same work as a and b), wall time of the whole command;
then the same with ~10 ms of latency per request (a proxy in front of moto), where the server is no
longer the bottleneck. Also: `ferry table` with verification, and on an empty table (fixed overhead).
Prints items/s and the ratios c/a and c/b, and writes them to bench/results/table.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers import ferry, local_services  # noqa: E402
from tables import create_table, put_items  # noqa: E402

BIN = Path(sys.executable).parent
ITEMS = int(os.environ.get("BENCH_ITEMS", 30_000))
LATENCY_ITEMS = int(os.environ.get("BENCH_LATENCY_ITEMS", 10_000))
LATENCY_MS = float(os.environ.get("BENCH_LATENCY_MS", 10))
PAGE_CONCURRENCY = 32


def client(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint,
                        config=Config(max_pool_connections=64, retries={"mode": "standard"}))


def bench_items(count: int) -> list[dict]:
    return [{"pk": {"S": f"user#{i:08d}"}, "sk": {"N": str(i)}, "payload": {"S": "p" * 900},
             "score": {"N": f"{i}.5"}, "active": {"BOOL": i % 2 == 0}} for i in range(count)]


def per_item_baseline(endpoint: str, source: str, target: str) -> None:
    """(a) The approach Ferry replaces, written faithfully."""
    dynamodb = client(endpoint)
    last = None
    with ThreadPoolExecutor(PAGE_CONCURRENCY) as pool:
        while True:
            page = dynamodb.scan(TableName=source, **({"ExclusiveStartKey": last} if last else {}))
            list(pool.map(lambda item: dynamodb.put_item(TableName=target, Item=item), page["Items"]))
            last = page.get("LastEvaluatedKey")
            if not last:
                return


def server_limit(endpoint: str, source: str, target: str, items: list[dict]) -> tuple[float, float]:
    """(b) Scan-only, then BatchWriteItem-only with pre-built batches; each at its best concurrency."""
    dynamodb = client(endpoint)

    def scan_segment(segment: int, total: int = 4) -> int:
        count = 0
        for page in dynamodb.get_paginator("scan").paginate(TableName=source, Segment=segment, TotalSegments=total):
            count += len(page["Items"])
        return count

    batches = [[{"PutRequest": {"Item": item}} for item in items[i:i + 25]] for i in range(0, len(items), 25)]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(scan_segment, range(4))) == len(items)
    scan_seconds = time.monotonic() - started
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda batch: dynamodb.batch_write_item(RequestItems={target: batch}), batches))
    return scan_seconds, time.monotonic() - started


def timed(fn, *args) -> float:
    started = time.monotonic()
    fn(*args)
    return time.monotonic() - started


def run_setting(label: str, endpoint: str, direct: str, prefect_env: dict, count: int) -> dict:
    """All methods on one table, at one latency setting. `direct` bypasses the proxy for set-up."""
    setup = client(direct)
    source = f"bench-{label}"
    items = bench_items(count)
    create_table(setup, source, ("pk", "S"), ("sk", "N"))
    put_items(setup, source, items)
    for target in ("a", "b", "c"):
        create_table(setup, f"{source}-{target}", ("pk", "S"), ("sk", "N"))

    a = timed(per_item_baseline, endpoint, source, f"{source}-a")
    scan_s, write_s = server_limit(endpoint, source, f"{source}-b", items)
    b = scan_s + write_s
    c, summary = ferry(endpoint, prefect_env, "table", source, f"{source}-c", "--no-verify")
    assert summary["copied"] == count, summary
    result = {
        "setting": label, "items": count,
        "per_item_items_per_s": round(count / a), "limit_items_per_s": round(count / b),
        "limit_scan_items_per_s": round(count / scan_s), "limit_write_items_per_s": round(count / write_s),
        "ferry_items_per_s": round(count / c), "ferry_seconds": round(c, 2),
        "ferry_vs_per_item": round(a / c, 2), "ferry_vs_limit": round(b / c, 2),
        "limit_vs_per_item": round(a / b, 2),
    }
    print_row(result)
    return result


def print_row(r: dict) -> None:
    print(f"{r['setting']:>12} | {r['items']:>6} items | per-item {r['per_item_items_per_s']:>6}/s | "
          f"limit {r['limit_items_per_s']:>6}/s | ferry {r['ferry_items_per_s']:>6}/s ({r['ferry_seconds']}s) | "
          f"c/a {r['ferry_vs_per_item']:>5}x | c/b {r['ferry_vs_limit']:>5}", flush=True)


def main() -> None:
    with local_services(latency_ms=LATENCY_MS) as services:
        direct, proxied, prefect_env = services.moto, services.proxied, services.prefect_env
        print(f"moto server, Prefect server and a {LATENCY_MS:.0f} ms proxy running; items of ~1 KB")
        results = [run_setting("no-latency", direct, direct, prefect_env, ITEMS),
                   run_setting(f"{LATENCY_MS:.0f}ms-latency", proxied, direct, prefect_env, LATENCY_ITEMS)]

        setup = client(direct)
        create_table(setup, "bench-empty", ("pk", "S"), ("sk", "N"))
        empty_s, _ = ferry(direct, prefect_env, "table", "bench-empty", "bench-empty-c", "--create-target")
        verify_s, summary = ferry(direct, prefect_env, "table", "bench-no-latency", "bench-no-latency-v", "--create-target")
        assert summary["verified"], summary
        extra = {"fixed_overhead_empty_table_seconds": round(empty_s, 2),
                 "ferry_with_verify_seconds": round(verify_s, 2),
                 "ferry_with_verify_items_per_s": round(ITEMS / verify_s)}
        print(f"fixed overhead (ferry table on an empty table, with verify): {empty_s:.2f}s")
        print(f"ferry table with verification, {ITEMS} items: {verify_s:.2f}s ({ITEMS / verify_s:.0f} items/s)")
        out = ROOT / "bench" / "results" / "table.json"
        out.write_text(json.dumps({"settings": results, **extra}, indent=2))
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
