"""`make bench` (bucket live sync): the poller's lag under a steady stream of puts and deletes.

A migrated bucket on moto's server; `ferry sync bucket` (the local poller) runs while a writer holds a
steady rate of changes (default 40/s: puts of small objects, every fourth a delete) for 20 s. Beside
it, in the same run, the baseline: a bare consumer that only receives and deletes the same bucket's
events from a queue of its own (a second migration of the source, which Ferry routes through
EventBridge): the least lag any event-driven sync pays here. The lag of a batch is from its oldest
event's arrival in the queue until it is applied (the poller) or received (the baseline); both
report p50/p99. Afterwards the target must equal the source. Writes bench/results/bucket_sync.json.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from servers import BIN, local_services  # noqa: E402

RATE = float(os.environ.get("BENCH_BUCKET_SYNC_RATE", 40))
SECONDS = float(os.environ.get("BENCH_BUCKET_SYNC_SECONDS", 20))
KEYS = 500


def steady_changes(rate: float, seconds: float) -> int:
    """`rate` changes per second on a fixed schedule: puts, and every fourth a delete."""
    s3, interval, n = boto3.client("s3"), 1 / rate, 0
    next_at, end = time.monotonic(), time.monotonic() + seconds
    while next_at < end:
        time.sleep(max(0.0, next_at - time.monotonic()))
        n += 1
        key = f"live/{(n * 7) % KEYS:05d}"
        if n % 4 == 0:
            s3.delete_object(Bucket="src-bucket", Key=key)
        else:
            s3.put_object(Bucket="src-bucket", Key=key, Body=f"v{n}".encode() * 10)
        next_at += interval
    return n


def bare_consumer(queue_url: str, stop: threading.Event, lags: list[float]) -> None:
    """The baseline: receive and delete, nothing applied."""
    sqs = boto3.client("sqs")
    while not stop.is_set():
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       AttributeNames=["SentTimestamp"]).get("Messages", [])
        if not messages:
            continue
        lags.append(time.time() - min(int(m["Attributes"]["SentTimestamp"]) for m in messages) / 1000)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(messages)])


def keys_and_etags(s3, bucket: str) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3) if ordered else 0.0


def main() -> None:
    from ferry.s3 import events

    with local_services() as services:
        env = {**os.environ, **services.prefect_env}
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        for bucket in ("src-bucket", "dst-bucket", "baseline-bucket"):
            s3.create_bucket(Bucket=bucket)
        for n in range(KEYS):
            s3.put_object(Bucket="src-bucket", Key=f"live/{n:05d}", Body=b"v0" * 10)
        subprocess.run([str(BIN / "ferry"), "bucket", "src-bucket", "dst-bucket", "--json"], env=env, check=True,
                       capture_output=True)
        baseline_url, _, route = events.route_to_queue(sqs, s3, boto3.client("events"), "src-bucket",
                                                       "baseline-bucket", "")
        stop, baseline_lags = threading.Event(), []
        baseline = threading.Thread(target=bare_consumer, args=(baseline_url, stop, baseline_lags))
        baseline.start()
        poller = subprocess.Popen([str(BIN / "ferry"), "sync", "bucket", "src-bucket", "dst-bucket", "--json"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)  # Prefect start-up; the poller then follows an idle queue
        started = time.monotonic()
        changes = steady_changes(RATE, SECONDS)
        achieved = changes / (time.monotonic() - started)
        queue = events.find_queue(sqs, "src-bucket", "dst-bucket")
        deadline = time.monotonic() + 120
        while not events.queue_is_empty(sqs, queue) and time.monotonic() < deadline:  # let the poller catch up
            time.sleep(0.5)
        caught_up_after = round(time.monotonic() - started - SECONDS, 1)
        time.sleep(2)
        poller.send_signal(signal.SIGTERM)
        out, err = poller.communicate(timeout=120)
        stop.set()
        baseline.join()
        if poller.returncode not in (0, 130):
            raise SystemExit(err[-2000:])
        summary = json.loads(out.strip().splitlines()[-1])
        equal = keys_and_etags(s3, "dst-bucket") == keys_and_etags(s3, "src-bucket")
        result = {
            "target_changes_per_s": RATE, "achieved_changes_per_s": round(achieved, 1), "changes": changes,
            "messages_applied": summary["messages"], "baseline_route": route.way,
            "lag_p50_seconds": summary["lag_p50_seconds"], "lag_p99_seconds": summary["lag_p99_seconds"],
            "lag_max_seconds": summary["lag_max_seconds"],
            "baseline_lag_p50_seconds": percentile(baseline_lags, 0.5),
            "baseline_lag_p99_seconds": percentile(baseline_lags, 0.99),
            "target_equals_source": equal, "caught_up_seconds_after_the_writes": caught_up_after,
        }
        result["p50_vs_baseline"] = round(result["lag_p50_seconds"] / max(result["baseline_lag_p50_seconds"], 1e-3), 2)
        print(f"bucket poller under {achieved:.0f} changes/s for {SECONDS:.0f}s: lag p50 {result['lag_p50_seconds']}s, "
              f"p99 {result['lag_p99_seconds']}s (bare consumer: p50 {result['baseline_lag_p50_seconds']}s, p99 "
              f"{result['baseline_lag_p99_seconds']}s; {statistics.mean(baseline_lags) if baseline_lags else 0:.3f}s "
              f"mean); {summary['messages']} messages applied; target equals source: {equal}")
        out_path = ROOT / "bench" / "results" / "bucket_sync.json"
        out_path.write_text(json.dumps(result, indent=2))
        print(f"written to {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
