"""Writes made to the source while the backfill runs all reach the target."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import boto3

from conftest import FERRY
from ferry.state import StateStore
from lambdas.write_rule import DELETED, VERSION
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


def last_keys_of_each_segment(dynamodb, segments: int) -> list[dict]:
    """The key the backfill reaches last in each scan segment (scan order is fixed for a table)."""
    keys = []
    for segment in range(segments):
        items = [item for page in dynamodb.get_paginator("scan").paginate(
            TableName="src", Segment=segment, TotalSegments=segments) for item in page["Items"]]
        keys.append({"pk": items[-1]["pk"]})
    return keys


def test_a_change_to_a_key_not_reached_yet_is_in_the_target_while_the_backfill_runs(dynamodb, run_ferry):
    items = 6_000
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(items, size=300))
    not_reached = last_keys_of_each_segment(dynamodb, 2)
    state = StateStore(dynamodb, "ferry-state")

    def copied() -> int:
        migration = state.load(MIGRATION) if state.exists() else None
        return migration.copied if migration else 0

    run = subprocess.Popen([FERRY, "table", "src", "dst", "--create-target", "--segments", "2", "--page-size", "25",
                            "--json"], env=run_ferry.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not copied():
        assert run.poll() is None and time.monotonic() < deadline, "the backfill did not start"
        time.sleep(0.05)
    for key in not_reached:
        dynamodb.update_item(TableName="src", Key=key, UpdateExpression="SET v = :v",
                             ExpressionAttributeValues={":v": {"S": "changed during the backfill"}})

    seen_while_copying = []
    while len(seen_while_copying) < len(not_reached) and run.poll() is None:
        copied_before = copied()
        for key in not_reached:
            item = dynamodb.get_item(TableName="dst", Key=key, ConsistentRead=True).get("Item", {})
            if item.get("v") == {"S": "changed during the backfill"} and key not in seen_while_copying:
                assert VERSION in item  # written by live sync, not by the backfill
                seen_while_copying.append(key)
                assert copied_before < items, "the backfill was over before live sync applied the change"
        time.sleep(0.05)
    out, err = run.communicate(timeout=300)

    assert run.returncode == 0, err[-2000:]
    assert sorted(k["pk"]["S"] for k in seen_while_copying) == sorted(k["pk"]["S"] for k in not_reached)
    target = scan_all(dynamodb, "dst")
    assert by_key(target, "pk") == by_key(scan_all(dynamodb, "src"), "pk")  # and no markers left behind
    assert not any(name in item for item in target for name in (VERSION, DELETED))


def test_a_delete_erased_by_a_killed_runs_batch_before_its_rewrite_is_applied_again_on_resume(dynamodb, run_ferry):
    """As a `kill -9` between a page's batch and its rewrite leaves it: live sync applied the delete
    of `gone` (and checkpointed it), the page's batch then wrote `gone`'s older image back, and the
    process died before the rewrite. The rerun's scan no longer sees the key; the replay must."""
    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    create_table(dynamodb, "dst")
    put_items(dynamodb, "src", simple_items(20))
    gone = {"pk": {"S": "gone"}, "v": {"S": "scanned before its delete"}}
    dynamodb.put_item(TableName="src", Item=gone)
    dynamodb.delete_item(TableName="src", Key={"pk": gone["pk"]})
    dynamodb.put_item(TableName="dst", Item=gone)  # the batch's older image, over the tombstone
    stream_arn = dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams")
    [shard] = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    last = streams.get_records(ShardIterator=iterator)["Records"][-1]["dynamodb"]["SequenceNumber"]
    state = StateStore(dynamodb, "ferry-state")
    state.ensure_table()
    state.begin(MIGRATION, "src", "dst", total_segments=1)
    migration = state.load(MIGRATION)
    migration.stream_arn = stream_arn
    state.set_phase(migration, migration.phase)
    state.save_shard(MIGRATION, shard["ShardId"], last)  # the delete was applied: checkpointed past it
    state.note_markers(MIGRATION)

    resumed = run_ferry("table", "src", "dst", "--json")

    assert resumed.returncode == 0 and resumed.json["verified"] is True, resumed.stderr[-2000:]
    assert "Item" not in dynamodb.get_item(TableName="dst", Key={"pk": gone["pk"]}, ConsistentRead=True)
