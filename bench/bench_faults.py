"""`make bench` (faults): what AWS's bad days cost. The same `ferry table` and `ferry bucket`, in one run,
once through tests/aws_proxy.py with no faults and once with the mix the tests use: 10% throttles,
2% 5xx, 1% dropped connections (half after the server acted), 10% of batch entries unprocessed.

Both end verified. Prints the seconds of each, the slowdown (faults / none) and the faults injected:
each injected throttle, 5xx or drop is one retry by the client (botocore's standard mode), each
unprocessed entry one re-sent write. Writes bench/results/faults.json.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from servers import aws_proxy, ferry, local_services  # noqa: E402
from tables import create_table, put_items  # noqa: E402

ITEMS = int(os.environ.get("BENCH_FAULT_ITEMS", 10_000))
OBJECTS = int(os.environ.get("BENCH_FAULT_OBJECTS", 300))
FAULTS = {"seed": 1, "throttle": 0.10, "server_error": 0.02, "drop": 0.01, "unprocessed": 0.10}
MIB = 2**20


def control(proxy: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{proxy}/proxy-api/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
    return json.loads(urllib.request.urlopen(request).read())


def run(label: str, proxy: str, prefect_env: dict, faults: dict) -> dict:
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    source = f"faults-{label}"
    create_table(dynamodb, source)
    put_items(dynamodb, source, [{"pk": {"S": f"k{i:07d}"}, "payload": {"S": "p" * 900}} for i in range(ITEMS)])
    s3.create_bucket(Bucket=f"{source}-src")
    s3.create_bucket(Bucket=f"{source}-dst")
    for i in range(OBJECTS):
        s3.put_object(Bucket=f"{source}-src", Key=f"obj-{i:05d}", Body=b"x" * (1024 + i))
    s3.put_object(Bucket=f"{source}-src", Key="big.bin", Body=os.urandom(11 * MIB))

    control(proxy, "faults", faults)
    table_s, table = ferry(proxy, prefect_env, "table", source, f"{source}-dst", "--create-target")
    table_faults = control(proxy, "faults")
    control(proxy, "faults", faults)
    bucket_s, bucket = ferry(proxy, prefect_env, "bucket", f"{source}-src", f"{source}-dst",
                             "--multipart-threshold", str(5 * MIB), "--part-size", str(5 * MIB))
    bucket_faults = control(proxy, "faults")
    assert table["verified"] and bucket["verified"], (table, bucket)
    result = {"setting": label, "table_seconds": round(table_s, 2), "bucket_seconds": round(bucket_s, 2),
              "table_injected": table_faults, "bucket_injected": bucket_faults}
    print(f"{label:>8} | ferry table {ITEMS} items {table_s:6.2f}s, {table_faults} | "
          f"ferry bucket {OBJECTS + 1} objects {bucket_s:6.2f}s, {bucket_faults}", flush=True)
    return result


def main() -> None:
    with local_services() as services, aws_proxy(services.moto) as proxy:
        clean = run("none", proxy, services.prefect_env, {})
        faulty = run("faults", proxy, services.prefect_env, FAULTS)
    summary = {"faults": FAULTS, "items": ITEMS, "objects": OBJECTS + 1, "runs": [clean, faulty],
               "table_slowdown": round(faulty["table_seconds"] / clean["table_seconds"], 2),
               "bucket_slowdown": round(faulty["bucket_seconds"] / clean["bucket_seconds"], 2)}
    print(f"slowdown under faults: table {summary['table_slowdown']}x, bucket {summary['bucket_slowdown']}x")
    out = ROOT / "bench" / "results" / "faults.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
