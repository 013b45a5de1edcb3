"""Writes made to the source while the backfill runs all reach the target."""

from __future__ import annotations

import random
import threading
import time

import boto3

from ferry.state import StateStore
from tables import MIGRATION, by_key, create_table, put_items, scan_all, simple_items

ITEMS = 4_000


def write_during_backfill(stop_at_copied: int, log: list[str]) -> None:
    """Insert, update and delete, from the moment the backfill has started until it is half done."""
    dynamodb = boto3.client("dynamodb")
    state = StateStore(dynamodb, "ferry-state")
    rng = random.Random(3)
    copied, n = 0, 0
    while copied < stop_at_copied:
        migration = state.load(MIGRATION) if "ferry-state" in dynamodb.list_tables()["TableNames"] else None
        copied = migration.copied if migration else 0
        if copied == 0:
            time.sleep(0.02)
            continue
        for _ in range(10):
            n += 1
            key = f"k{rng.randrange(ITEMS):07d}"  # early keys are copied already, late ones not yet
            action = rng.choice(["insert", "update", "delete"])
            if action == "insert":
                dynamodb.put_item(TableName="src", Item={"pk": {"S": f"new{n:05d}"}, "v": {"N": str(n)}})
            elif action == "update":
                dynamodb.update_item(TableName="src", Key={"pk": {"S": key}}, UpdateExpression="SET v = :v",
                                     ExpressionAttributeValues={":v": {"N": str(n)}})
            else:
                dynamodb.delete_item(TableName="src", Key={"pk": {"S": key}})
            log.append(action)


def test_inserts_updates_and_deletes_during_the_backfill_reach_the_target(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS))
    changes: list[str] = []
    writer = threading.Thread(target=write_during_backfill, args=(ITEMS // 2, changes))
    writer.start()

    result = run_ferry("table", "src", "dst", "--create-target", "--segments", "2", "--page-size", "50", "--json")
    writer.join()

    assert result.returncode == 0, result.stderr
    assert {"insert", "update", "delete"} <= set(changes)
    assert result.json["stream_records"] >= len(changes)
    assert result.json["verified"] is True
    assert by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")
