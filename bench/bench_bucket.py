"""`make bench` (buckets): Ferry against `aws s3 sync` and `rclone sync`, and the server's copy limit.

On one moto server (with a Prefect server running), the same 2,000 objects of mixed sizes (mostly
1-16 KB, ten of 6 MB) are copied by each tool into its own empty bucket, then each tool re-syncs
with nothing changed (the no-op). The server's limit: server-side CopyObject of the same keys at the
best of a few concurrencies. All of it once directly and once behind a proxy adding 50 ms per
request, where concurrency and parallel listing decide. Writes bench/results/bucket.json.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from servers import BIN, local_services  # noqa: E402

OBJECTS = int(os.environ.get("BENCH_OBJECTS", 2000))
LATENCY_MS = float(os.environ.get("BENCH_BUCKET_LATENCY_MS", 50))


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=64))


def seed(s3, bucket: str) -> list[str]:
    rng = random.Random(1)
    s3.create_bucket(Bucket=bucket)
    keys = [f"data/{i % 20:02d}/object-{i:05d}.bin" for i in range(OBJECTS)]
    sizes = [6 * 2**20 if i % (OBJECTS // 10) == 0 else rng.randint(1, 16) * 1024 for i in range(OBJECTS)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda ks: s3.put_object(Bucket=bucket, Key=ks[0], Body=os.urandom(ks[1])), zip(keys, sizes)))
    return keys


def timed(command: list[str], env: dict) -> float:
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0,):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-1500:]}")
    return time.monotonic() - started


def ferry_phases(source: str, target: str) -> dict:
    """Seconds of the last migrate-bucket run's phases, read from the Prefect API: the bulk sync
    (listing, comparing and copying, which overlap), its copy tasks alone (first start to last end),
    draining, verifying."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"migrate-bucket {source} -> {target}"])), sort=FlowRunSort.START_TIME_DESC,
            limit=1)[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    phases = {"sync": "compare and copy", "copy": "copy ", "drain": "apply queued", "verify": "verify "}
    seconds = {"flow": (run.end_time - run.start_time).total_seconds()}
    for phase, name in phases.items():
        chosen = [t for t in tasks if t.name.startswith(name) and t.start_time and t.end_time]
        if chosen:
            seconds[phase] = (max(t.end_time for t in chosen) - min(t.start_time for t in chosen)).total_seconds()
    return {k: round(v, 2) for k, v in seconds.items()}


def copy_limit(endpoint: str, source: str, keys: list[str]) -> tuple[float, int]:
    """Server-side copies of every key at a few concurrencies; the best time."""
    s3 = s3_client(endpoint)
    best = (float("inf"), 0)
    for threads in (8, 16, 32):
        target = f"limit-{threads}-{int(time.time())}"
        s3.create_bucket(Bucket=target)
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda k: s3.copy_object(Bucket=target, Key=k, CopySource={"Bucket": source, "Key": k}), keys))
        best = min(best, (time.monotonic() - started, threads))
    return best


def run_setting(label: str, endpoint: str, direct: str, prefect_env: dict, overhead: float) -> dict:
    setup = s3_client(direct)
    source = f"src-{label}"
    keys = seed(setup, source)
    env = {**os.environ, **prefect_env, "AWS_ENDPOINT_URL": endpoint}
    rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"} | {
        "RCLONE_CONFIG_MOTO_TYPE": "s3", "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint, "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "bench",
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "bench", "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_MOTO_REGION": "us-east-1"}
    tools = {
        "aws s3 sync": lambda t: [str(BIN / "aws"), "s3", "sync", "--only-show-errors", f"s3://{source}", f"s3://{t}"],
        "ferry bucket": lambda t: [str(BIN / "ferry"), "bucket", source, t, "--json"],
    }
    if shutil.which("rclone"):
        tools["rclone sync"] = lambda t: ["rclone", "sync", f"moto:{source}", f"moto:{t}"]
    result = {"setting": label, "objects": OBJECTS}
    for name, command in tools.items():
        target = f"{name.split()[0]}-{label}"
        setup.create_bucket(Bucket=target)
        use_env = rclone_env if name.startswith("rclone") else env
        result[f"{name} seconds"] = round(timed(command(target), use_env), 2)
        if name == "ferry bucket":
            result["ferry phases"] = ferry_phases(source, target)
        result[f"{name} no-op seconds"] = round(timed(command(target), use_env), 2)
        if name == "ferry bucket":
            result["ferry no-op phases"] = ferry_phases(source, target)
    limit_seconds, threads = copy_limit(endpoint, source, keys)
    result["limit seconds"], result["limit threads"] = round(limit_seconds, 2), threads
    result["ferry vs limit"] = round(limit_seconds / result["ferry bucket seconds"], 2)
    result["ferry copy phase vs limit"] = round(limit_seconds / result["ferry phases"]["copy"], 2)
    result["ferry no-op beyond start-up seconds"] = round(result["ferry bucket no-op seconds"] - overhead, 2)
    for name in tools:
        if name != "ferry bucket":
            result[f"ferry vs {name}"] = round(result[f"{name} seconds"] / result["ferry bucket seconds"], 2)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    with local_services(latency_ms=LATENCY_MS) as services:
        env = {**os.environ, **services.prefect_env}
        setup = s3_client(services.moto)
        os.environ.update(services.prefect_env)  # ferry_phases reads the runs from this Prefect server
        results = []
        for label, endpoint in (("no-latency", services.moto), (f"{LATENCY_MS:.0f}ms", services.proxied)):
            # Fixed start-up: Python and Prefect imports, flow start, and every step on empty buckets.
            setup.create_bucket(Bucket=f"empty-src-{label}")
            setup.create_bucket(Bucket=f"empty-dst-{label}")
            empty = [str(BIN / "ferry"), "bucket", f"empty-src-{label}", f"empty-dst-{label}", "--json"]
            timed(empty, {**env, "AWS_ENDPOINT_URL": endpoint})  # first run: creates the event queue
            overhead = timed(empty, {**env, "AWS_ENDPOINT_URL": endpoint})
            print(f"{label}: ferry bucket fixed start-up (empty buckets): {overhead:.2f}s")
            result = run_setting(label, endpoint, services.moto, services.prefect_env, overhead)
            results.append(result | {"ferry fixed start-up seconds": round(overhead, 2)})
        out = ROOT / "bench" / "results" / "bucket.json"
        out.write_text(json.dumps({"settings": results}, indent=2))
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
