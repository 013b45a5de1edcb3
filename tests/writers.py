"""A stand-in for the live service: a thread that keeps inserting, updating and deleting."""

from __future__ import annotations

import random
import threading
import time

import boto3


class LiveWriter(threading.Thread):
    """Writes to `table` until stopped: inserts of new keys, updates and deletes of existing keys
    anywhere in the key space (so of items the backfill has copied and of items it has not), an
    update of a deleted key bringing it back (delete-then-reinsert), and now and then the delete of
    the key it inserted last (insert-then-delete)."""

    def __init__(self, table: str, existing: int, rate_per_second: float = 150, seed: int = 5):
        super().__init__(daemon=True)
        self.table, self.existing, self.interval = table, existing, 1 / rate_per_second
        self.rng = random.Random(seed)
        self.counts = {"insert": 0, "update": 0, "delete": 0}
        self.stopping = threading.Event()

    def run(self) -> None:
        client = boto3.client("dynamodb")
        n = 0
        last_inserted = None
        while not self.stopping.is_set():
            n += 1
            action = self.rng.choice(["insert", "update", "update", "delete"])
            key = {"pk": {"S": f"k{self.rng.randrange(self.existing):07d}"}}
            if action == "delete" and last_inserted and self.rng.random() < 0.25:
                key, last_inserted = last_inserted, None  # inserted a moment ago
            if action == "insert":
                client.put_item(TableName=self.table, Item={"pk": {"S": f"live{n:06d}"}, "v": {"N": str(n)}})
                last_inserted = {"pk": {"S": f"live{n:06d}"}}
            elif action == "update":
                client.update_item(TableName=self.table, Key=key, UpdateExpression="SET v = :v",
                                   ExpressionAttributeValues={":v": {"N": str(n)}})
            else:
                client.delete_item(TableName=self.table, Key=key)
            self.counts[action] += 1
            time.sleep(self.interval)

    def stop(self) -> dict:
        self.stopping.set()
        self.join()
        return self.counts


class BucketWriter(threading.Thread):
    """The service writing to the bucket: new objects, overwrites and deletes, directly (not through the proxy)."""

    def __init__(self, bucket: str, existing: int):
        super().__init__(daemon=True)
        self.bucket, self.existing, self.writes = bucket, existing, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        client = boto3.client("s3")
        while not self.stopping.is_set():
            n = self.writes = self.writes + 1
            if n % 3 == 0:
                client.delete_object(Bucket=self.bucket, Key=f"obj-{(n * 7) % self.existing:04d}")
            else:
                key = f"new {n}.txt" if n % 2 else f"obj-{n % self.existing:04d}"
                client.put_object(Bucket=self.bucket, Key=key, Body=f"w{n}".encode())
            self.stopping.wait(0.1)

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.writes
