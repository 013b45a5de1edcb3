"""`make demo`: the whole journey of a plan on a local AWS (moto's server, in this process).

A plan of one live 10,000-item table and one bucket (examples/demo-plan.yaml, written at the start):
  1. `ferry run`       backfill and bulk copy while a writer keeps changing the source (live sync
                       applies those changes beside the backfill), then both verified
  2. `ferry sync plan` live sync carries changes made since
  3. `ferry cutover`   gates (lag, final verification), the switch of two SSM parameters, reverse sync
  4. reverse sync      a write to the new table and a new object in the new bucket reach the old ones
  5. `ferry rollback`  the parameters restored, forward live sync resumed
It uses a Prefect server of its own (started here) unless PREFECT_API_URL names one.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

ITEMS = 10_000
SOURCE, TARGET = "orders", "orders-v2"
BUCKET, NEW_BUCKET = "media", "media-v2"
OBJECTS = 300
PLAN = f"""\
name: demo
tables:
  - {{source: {SOURCE}, target: {TARGET}, create_target: true, page_size: 1000}}
buckets:
  - {{source: {BUCKET}, target: {NEW_BUCKET}}}
cutover:
  parameters:
    - {{name: /demo/table, value: {TARGET}}}
    - {{name: /demo/bucket, value: {NEW_BUCKET}}}
  max_lag_seconds: 5
  reverse_sync: true
"""


def demo_item(i: int) -> dict:
    """An order; across the table, every DynamoDB attribute type appears, nested ones included.

    Each item has a lean core (S, a 38-digit N, N, BOOL) plus one of the richer shapes in turn, so
    that the table covers every type without every item carrying all of them.
    """
    item = {
        "customer": {"S": f"customer#{i % 500:04d}"},
        "order": {"N": str(10**37 + i)},
        "total": {"N": f"{random.randint(1, 99999)}.{random.randint(0, 99):02d}"},
        "gift": {"BOOL": i % 3 == 0},
    }
    shape = i % 7
    if shape == 0:
        item["receipt"] = {"B": os.urandom(16)}
        item["signatures"] = {"BS": [os.urandom(8), os.urandom(4)]}
    elif shape == 1:
        item["tags"] = {"SS": ["demo", f"batch-{i % 10}"]}
    elif shape == 2:
        item["quantities"] = {"NS": [str(random.randint(1, 9)), "12345678901234567890123456789012345678"]}
    elif shape == 3:
        item["coupon"] = {"NULL": True}
    elif shape == 4:
        item["lines"] = {"L": [{"M": {"sku": {"S": f"sku-{i % 97}"}, "qty": {"N": "2"}}}, {"S": "note ✓"}]}
    elif shape == 5:
        item["address"] = {"M": {"city": {"S": "Lisboa"}, "geo": {"M": {"lat": {"N": "38.7223"}}}}}
    else:
        item["status"] = {"S": "shipped"}
    return item


def seed(dynamodb) -> None:
    from lambdas.batch_write import put_requests, write_all

    dynamodb.create_table(
        TableName=SOURCE,
        KeySchema=[{"AttributeName": "customer", "KeyType": "HASH"}, {"AttributeName": "order", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "customer", "AttributeType": "S"},
                              {"AttributeName": "order", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    write_all(dynamodb, SOURCE, put_requests([demo_item(i) for i in range(ITEMS)]))


def keep_writing(stop: threading.Event, counts: dict, watched: dict) -> None:
    """The live service: it keeps writing until the backfill is most of the way through."""
    from ferry.config import TableJob
    from ferry.state import StateStore

    dynamodb = boto3.client("dynamodb")
    state = StateStore(dynamodb, "ferry-state")
    n = ITEMS
    while not stop.is_set():
        migration = state.load(TableJob(source=SOURCE, target=TARGET).migration_id) if state.exists() else None
        if migration and (migration.phase not in ("preflight", "backfill") or migration.copied > 0.6 * ITEMS):
            return
        if migration is None or migration.copied == 0:
            time.sleep(0.05)
            continue
        for _ in range(20):
            n += 1
            action = random.choice(["insert", "update", "delete"])
            victim = demo_item(random.randrange(ITEMS))
            key = {"customer": victim["customer"], "order": victim["order"]}
            if action == "insert":
                dynamodb.put_item(TableName=SOURCE, Item=demo_item(n))
            elif action == "update":
                dynamodb.update_item(TableName=SOURCE, Key=key, UpdateExpression="SET #s = :s",
                                     ExpressionAttributeNames={"#s": "status"},
                                     ExpressionAttributeValues={":s": {"S": "changed-during-backfill"}})
                watched.setdefault("key", (key, time.monotonic()))
            else:
                dynamodb.delete_item(TableName=SOURCE, Key=key)
            counts[action] += 1


def watch_live_sync(stop: threading.Event, watched: dict) -> None:
    """Wait for the first change made during the backfill to reach the target; note how far the
    backfill was then: live sync runs beside it, so that is long before the backfill ends."""
    from ferry.config import TableJob
    from ferry.state import StateStore

    dynamodb = boto3.client("dynamodb")
    state = StateStore(dynamodb, "ferry-state")
    while not stop.is_set():
        if "key" in watched:
            key, changed_at = watched["key"]
            try:
                item = dynamodb.get_item(TableName=TARGET, Key=key, ConsistentRead=True).get("Item", {})
            except dynamodb.exceptions.ResourceNotFoundException:
                item = {}
            if item.get("status") == {"S": "changed-during-backfill"}:
                migration = state.load(TableJob(source=SOURCE, target=TARGET).migration_id)
                watched["seen"] = (time.monotonic() - changed_at, migration.copied, migration.backfilled)
                return
        time.sleep(0.05)


def seed_bucket(s3, ssm) -> None:
    for bucket in (BUCKET, NEW_BUCKET):
        s3.create_bucket(Bucket=bucket)
    for i in range(OBJECTS):
        s3.put_object(Bucket=BUCKET, Key=f"photos/{i:04d}.jpg", Body=os.urandom(512 + i), ContentType="image/jpeg",
                      Metadata={"camera": f"demo-{i % 5}"})
    ssm.put_parameter(Name="/demo/table", Value=SOURCE, Type="String")
    ssm.put_parameter(Name="/demo/bucket", Value=BUCKET, Type="String")


def start_prefect() -> subprocess.Popen | None:
    """A Prefect server for the demo's commands (each would otherwise start a temporary one)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    import socket
    import tempfile
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="ferry-demo-prefect-")
    os.environ.update(PREFECT_HOME=home, PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false")
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
            print(f"Prefect server (the UI) on http://127.0.0.1:{port}")
            return server
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the Prefect server did not start")


def ferry(*args: str) -> int:
    """The installed CLI, in its own process, as users run it."""
    print(f"\n$ ferry {' '.join(args)}", flush=True)
    return subprocess.run([str(Path(sys.executable).parent / "ferry"), *args]).returncode


def parameters(ssm) -> str:
    return ", ".join(f"{name} = {ssm.get_parameter(Name=name)['Parameter']['Value']}"
                     for name in ("/demo/table", "/demo/bucket"))


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="demo",
                      AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    print(f"local AWS (moto) on http://{host}:{port}")
    prefect = start_prefect()
    plan = Path(__file__).resolve().parent / "demo-plan.yaml"
    plan.write_text(PLAN)

    started = time.monotonic()
    dynamodb, s3, ssm = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("ssm")
    seed(dynamodb)
    seed_bucket(s3, ssm)
    print(f"source table {SOURCE!r}: {ITEMS:,} items of every attribute type; bucket {BUCKET!r}: {OBJECTS} objects; "
          f"{parameters(ssm)} ({time.monotonic() - started:.1f}s)")
    try:
        code = journey(plan, dynamodb, s3, ssm)
    finally:
        if prefect:
            prefect.terminate()
        server.stop()
    print(f"\ndemo: {'the journey is complete' if code == 0 else f'FAILED (exit {code})'} in "
          f"{time.monotonic() - started:.0f}s")
    return code


def journey(plan: Path, dynamodb, s3, ssm) -> int:
    counts = {"insert": 0, "update": 0, "delete": 0}
    stop, watched = threading.Event(), {}
    writer = threading.Thread(target=keep_writing, args=(stop, counts, watched), daemon=True)
    writer.start()
    watcher = threading.Thread(target=watch_live_sync, args=(stop, watched), daemon=True)
    watcher.start()
    print(f"\n1. migrate the plan while a writer keeps changing {SOURCE}")
    code = ferry("run", str(plan))
    stop.set()
    writer.join()
    print(f"changes written to the source during the backfill: {counts['insert']} inserts, "
          f"{counts['update']} updates, {counts['delete']} deletes")
    if "seen" in watched:
        lag, copied, backfilled = watched["seen"]
        when = "after the backfill" if backfilled else f"while the backfill had copied {copied:,} of ~{ITEMS:,} items"
        print(f"live sync: the first change made during the backfill was in {TARGET} {lag:.1f}s later, {when}")
    if code:
        return code

    print(f"\n2. the old home is still in use: live sync carries its changes")
    dynamodb.put_item(TableName=SOURCE, Item=demo_item(ITEMS + 10_000))
    s3.put_object(Bucket=BUCKET, Key="photos/new-before-cutover.jpg", Body=b"x" * 2048)
    if code := ferry("sync", "plan", str(plan), "--until-idle", "2"):
        return code

    print("\n3. cut over: gates, approval (--yes), the switch, reverse sync")
    if code := ferry("cutover", str(plan), "--yes"):
        return code
    print(f"parameters now: {parameters(ssm)}")

    print(f"\n4. the service writes to the new home; reverse sync carries it back to the old one")
    new_item = demo_item(ITEMS + 20_000)
    dynamodb.put_item(TableName=TARGET, Item=new_item)
    s3.put_object(Bucket=NEW_BUCKET, Key="photos/new-after-cutover.jpg", Body=b"y" * 4096)
    if code := ferry("sync", "plan", str(plan), "--until-idle", "2"):
        return code
    key = {"customer": new_item["customer"], "order": new_item["order"]}
    back_in_old = "Item" in dynamodb.get_item(TableName=SOURCE, Key=key, ConsistentRead=True)
    object_back = s3.head_object(Bucket=BUCKET, Key="photos/new-after-cutover.jpg")["ContentLength"] == 4096
    print(f"in the old table: {'yes' if back_in_old else 'NO'}; in the old bucket: {'yes' if object_back else 'NO'}")
    if not (back_in_old and object_back):
        return 1

    print("\n5. roll back: the parameters restored, forward live sync resumed")
    if code := ferry("rollback", str(plan), "--yes"):
        return code
    print(f"parameters now: {parameters(ssm)}")
    return ferry("status", str(plan))


if __name__ == "__main__":
    sys.exit(main())
