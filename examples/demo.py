"""`make demo`: migrate a live 20,000-item table on a local AWS (moto's server, in this process).

A writer thread keeps changing the source (inserts, updates, deletes) while the backfill runs; live
sync applies those changes beside the backfill (the demo shows the first one reaching the target
while the backfill is still copying), and the migration proves the copy exact with a checksum.
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

ITEMS = 20_000
SOURCE, TARGET = "orders", "orders-v2"


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

    started = time.monotonic()
    seed(boto3.client("dynamodb"))
    print(f"source table {SOURCE!r}: {ITEMS:,} items of every attribute type ({time.monotonic() - started:.1f}s)")

    counts = {"insert": 0, "update": 0, "delete": 0}
    stop, watched = threading.Event(), {}
    writer = threading.Thread(target=keep_writing, args=(stop, counts, watched), daemon=True)
    writer.start()
    watcher = threading.Thread(target=watch_live_sync, args=(stop, watched), daemon=True)
    watcher.start()
    print(f"running: ferry table {SOURCE} {TARGET} --create-target --page-size 1000  (a writer keeps changing {SOURCE})")
    ferry = Path(sys.executable).parent / "ferry"  # the installed CLI, in its own process, as users run it
    # Pages of 1,000 items, so that the progress bars move and the writer has a backfill to race.
    code = subprocess.run([str(ferry), "table", SOURCE, TARGET, "--create-target", "--page-size", "1000"]).returncode
    stop.set()
    writer.join()
    print(f"changes written to the source during the backfill: {counts['insert']} inserts, "
          f"{counts['update']} updates, {counts['delete']} deletes")
    if "seen" in watched:
        lag, copied, backfilled = watched["seen"]
        when = "after the backfill" if backfilled else f"while the backfill had copied {copied:,} of ~{ITEMS:,} items"
        print(f"live sync: the first change made during the backfill was in {TARGET} {lag:.1f}s later, {when}")
    print("demo: migration verified: target equals source" if code == 0 else f"demo: FAILED (exit {code})")
    server.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
