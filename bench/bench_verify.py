"""`make bench` (verify): memory stays flat with table size, and verify runs near scan speed.

On one moto server:
  - memory: verify a 20,000-item pair and a 200,000-item pair, each in a fresh subprocess, and
    compare their peak RSS (resource.getrusage); the target is <= ~1.3x;
  - throughput: verify the 200,000-item pair against two plain parallel scans of the same tables
    (same segments and threads, no hashing); the target is >= 0.8.
Writes bench/results/verify.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers import local_services  # noqa: E402
from tables import create_table, put_items  # noqa: E402

SMALL, LARGE = int(os.environ.get("BENCH_VERIFY_SMALL", 20_000)), int(os.environ.get("BENCH_VERIFY_LARGE", 200_000))
SEGMENTS = 4

MEASURE = """
import json, resource, sys, time, boto3
from ferry.dynamo.verify import verify_tables
client = boto3.client("dynamodb")
started = time.monotonic()
report = verify_tables(client, client, sys.argv[1], sys.argv[2], ["pk"], segments=int(sys.argv[3]))
print(json.dumps({"seconds": time.monotonic() - started, "equal": report.equal, "items": report.source_items,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def items(count: int) -> list[dict]:
    return [{"pk": {"S": f"k{i:09d}"}, "n": {"N": str(i)}, "s": {"S": "v" * 40}} for i in range(count)]


def make_pair(client, name: str, count: int) -> None:
    data = items(count)
    for table in (f"{name}-src", f"{name}-dst"):
        create_table(client, table)
        for start in range(0, count, 50_000):
            put_items(client, table, data[start:start + 50_000])


def measure_verify(name: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, f"{name}-src", f"{name}-dst", str(SEGMENTS)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_scans(client, name: str) -> float:
    """Two plain parallel scans: the floor any verification must read."""
    def scan(table_segment):
        table, segment = table_segment
        count = 0
        for page in client.get_paginator("scan").paginate(TableName=table, Segment=segment,
                                                          TotalSegments=SEGMENTS, ConsistentRead=True):
            count += len(page["Items"])
        return count

    started = time.monotonic()
    work = [(f"{name}-{side}", s) for side in ("src", "dst") for s in range(SEGMENTS)]
    with ThreadPoolExecutor(len(work)) as pool:
        sum(pool.map(scan, work))
    return time.monotonic() - started


def main() -> None:
    with local_services(prefect=False) as services:
        client = boto3.client("dynamodb", endpoint_url=services.moto)
        print(f"loading {SMALL:,}- and {LARGE:,}-item pairs of tables ...", flush=True)
        make_pair(client, "small", SMALL)
        make_pair(client, "large", LARGE)
        small, large = measure_verify("small"), measure_verify("large")
        assert small["equal"] and large["equal"] and large["items"] == LARGE
        scans = plain_scans(client, "large")
        result = {
            "small_items": SMALL, "large_items": LARGE,
            "small_peak_rss_mb": round(small["peak_rss_mb"], 1), "large_peak_rss_mb": round(large["peak_rss_mb"], 1),
            "memory_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
            "verify_seconds": round(large["seconds"], 2), "plain_scans_seconds": round(scans, 2),
            "verify_items_per_s": round(2 * LARGE / large["seconds"]),
            "throughput_vs_plain_scans": round(scans / large["seconds"], 2),
        }
        print(f"peak memory: {result['small_peak_rss_mb']} MB for {SMALL:,} items, "
              f"{result['large_peak_rss_mb']} MB for {LARGE:,} items: ratio {result['memory_ratio']} (target <= 1.3)")
        print(f"verify {LARGE:,}-item pair: {result['verify_seconds']}s; two plain parallel scans: "
              f"{result['plain_scans_seconds']}s; ratio {result['throughput_vs_plain_scans']} (target >= 0.8)")
        out = ROOT / "bench" / "results" / "verify.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
