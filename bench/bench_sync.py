"""`make bench` (live sync): the poller's lag under a steady write load.

A migrated table on moto's server; `ferry sync table` (the local poller) runs while a writer holds a
steady rate of changes (default 200 writes/s: inserts, updates, deletes) for 20 s. The lag of each
batch the poller reads is the age of its oldest record (now - ApproximateCreationDateTime); the
poller reports p50/p99/max. Afterwards the target must equal the source. Writes bench/results/sync.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers import BIN, local_services  # noqa: E402
from tables import by_key, create_table, put_items, scan_all, simple_items  # noqa: E402

RATE = float(os.environ.get("BENCH_SYNC_RATE", 200))
SECONDS = float(os.environ.get("BENCH_SYNC_SECONDS", 20))
WRITERS = 4


def steady_writes(rate: float, seconds: float) -> int:
    """`rate` writes per second, on a fixed schedule, spread over a few threads."""
    done = [0] * WRITERS

    def write(worker: int) -> None:
        client = boto3.client("dynamodb")
        interval = WRITERS / rate
        next_at = time.monotonic() + worker * interval / WRITERS
        end = time.monotonic() + seconds
        n = 0
        while next_at < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            n += 1
            key = {"pk": {"S": f"k{(n * 7 + worker) % 2000:07d}"}}
            if n % 5 == 0:
                client.delete_item(TableName="src", Key=key)
            else:
                client.put_item(TableName="src", Item={**key, "v": {"N": str(n)}, "w": {"N": str(worker)}})
            done[worker] += 1
            next_at += interval

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def main() -> None:
    with local_services() as services:
        env = {**os.environ, **services.prefect_env}
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "src")
        put_items(dynamodb, "src", simple_items(2000))
        subprocess.run([str(BIN / "ferry"), "table", "src", "dst", "--create-target", "--json"], env=env, check=True,
                       capture_output=True)
        poller = subprocess.Popen([str(BIN / "ferry"), "sync", "table", "src", "dst", "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)  # Prefect start-up; the poller is then following an idle stream
        started = time.monotonic()
        writes = steady_writes(RATE, SECONDS)
        achieved = writes / (time.monotonic() - started)
        time.sleep(3)
        poller.send_signal(signal.SIGTERM)
        out, err = poller.communicate(timeout=120)
        if poller.returncode:
            raise SystemExit(err[-2000:])
        summary = json.loads(out.strip().splitlines()[-1])
        equal = by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")
        result = {"target_writes_per_s": RATE, "achieved_writes_per_s": round(achieved, 1), "writes": writes,
                  "records_applied": summary["records"], "lag_p50_seconds": summary["lag_p50_seconds"],
                  "lag_p99_seconds": summary["lag_p99_seconds"], "lag_max_seconds": summary["lag_max_seconds"],
                  "target_equals_source": equal}
        print(f"poller under {achieved:.0f} writes/s for {SECONDS:.0f}s: lag p50 {result['lag_p50_seconds']}s, "
              f"p99 {result['lag_p99_seconds']}s, max {result['lag_max_seconds']}s; "
              f"{summary['records']} records applied; target equals source: {equal}")
        out_path = ROOT / "bench" / "results" / "sync.json"
        out_path.write_text(json.dumps(result, indent=2))
        print(f"written to {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
