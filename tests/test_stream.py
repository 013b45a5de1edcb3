"""Stream replay: changes made after the stream was enabled reach the target, in order, once."""

from __future__ import annotations

import time

import boto3
import pytest

from ferry.dynamo.stream import enable_stream, follow_stream, lineage_order
from ferry.errors import CannotContinue
from lambdas.dynamo_apply import apply_stream_records, collapse
from tables import by_key, create_table, put_items, scan_all, simple_items


def replay(dynamodb, streams, arn, checkpoints, saved):
    return follow_stream(
        streams, arn, checkpoints,
        apply=lambda records: len(apply_stream_records(dynamodb, "dst", records, guarded=False).rejected),
        save_checkpoint=lambda shard, seq: saved.append((shard, seq)),
        idle_seconds=0,
    )


def test_replay_applies_inserts_updates_and_deletes_made_after_the_backfill_read(dynamodb):
    streams = boto3.client("dynamodbstreams")
    create_table(dynamodb, "src")
    create_table(dynamodb, "dst")
    put_items(dynamodb, "src", simple_items(30))
    arn = enable_stream(dynamodb, streams, "src")
    put_items(dynamodb, "dst", scan_all(dynamodb, "src"))  # the backfill saw this state
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "new"}, "v": {"N": "1"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "k0000001"}, "v": {"S": "updated"}})
    dynamodb.delete_item(TableName="src", Key={"pk": {"S": "k0000002"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "gone"}, "v": {"N": "1"}})
    dynamodb.delete_item(TableName="src", Key={"pk": {"S": "gone"}})  # inserted then deleted: must not appear
    saved: list = []

    result = replay(dynamodb, streams, arn, {}, saved)

    assert result.records == 5
    assert by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")
    assert saved and saved[-1][1]  # a checkpoint after the applied records


def test_replay_resumes_after_its_checkpoint_without_reapplying(dynamodb):
    streams = boto3.client("dynamodbstreams")
    create_table(dynamodb, "src")
    create_table(dynamodb, "dst")
    arn = enable_stream(dynamodb, streams, "src")
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "a"}})
    checkpoints: dict = {}
    replay(dynamodb, streams, arn, checkpoints, [])
    dynamodb.delete_item(TableName="dst", Key={"pk": {"S": "a"}})  # a replay from scratch would restore it
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "b"}})

    result = replay(dynamodb, streams, arn, checkpoints, [])

    assert result.records == 1
    assert {i["pk"]["S"] for i in scan_all(dynamodb, "dst")} == {"b"}


def test_enable_stream_reuses_a_compatible_stream(dynamodb):
    streams = boto3.client("dynamodbstreams")
    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    existing = dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]
    assert enable_stream(dynamodb, streams, "src") == existing


def shard(shard_id, start, parent=None, end=None):
    shard = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": start}}
    if parent:
        shard["ParentShardId"] = parent
    if end:
        shard["SequenceNumberRange"]["EndingSequenceNumber"] = end
    return shard


def test_lineage_order_puts_parents_before_children_even_when_listed_after():
    shards = [shard("child-b", "300", parent="parent"), shard("grandchild", "500", parent="child-a"),
              shard("child-a", "200", parent="parent"), shard("parent", "100", end="199"),
              shard("orphan", "050", parent="expired")]
    order = [s["ShardId"] for s in lineage_order(shards)]
    assert order.index("parent") < order.index("child-a") < order.index("grandchild")
    assert order.index("parent") < order.index("child-b")
    assert sorted(order) == sorted(s["ShardId"] for s in shards)


class FakeStreams:
    """Synthetic shards with lineage (moto's server only ever has one shard)."""

    def __init__(self, shards: dict[str, list[dict]], lineage: list[dict]):
        self.shards, self.lineage, self.reads = shards, lineage, []

    def describe_stream(self, StreamArn, **kwargs):
        return {"StreamDescription": {"Shards": self.lineage, "StreamStatus": "ENABLED"}}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        records = self.shards[ShardId]
        start = 0 if ShardIteratorType == "TRIM_HORIZON" else 1 + next(
            i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == SequenceNumber)
        return {"ShardIterator": f"{ShardId}:{start}"}

    def get_records(self, ShardIterator, Limit):
        shard_id, start = ShardIterator.split(":")
        start = int(start)
        records = self.shards[shard_id][start:start + Limit]
        self.reads.append(shard_id)
        closed = any(s["ShardId"] == shard_id and "EndingSequenceNumber" in s["SequenceNumberRange"] for s in self.lineage)
        finished = start + len(records) >= len(self.shards[shard_id])
        next_iterator = None if (closed and finished) else f"{shard_id}:{start + len(records)}"
        return {"Records": records, "NextShardIterator": next_iterator}


def change(seq, key, name="MODIFY", value="v"):
    record = {"eventName": name, "dynamodb": {"SequenceNumber": seq, "Keys": {"pk": {"S": key}}}}
    if name != "REMOVE":
        record["dynamodb"]["NewImage"] = {"pk": {"S": key}, "v": {"S": value}}
    return record


def test_replay_drains_a_parent_shard_before_its_child_so_later_changes_win():
    lineage = [shard("child", "200", parent="parent"), shard("parent", "100", end="199")]
    streams = FakeStreams({
        "parent": [change("100", "a", "INSERT", "old"), change("101", "b", "INSERT")],
        "child": [change("200", "a", "MODIFY", "new"), change("201", "b", "REMOVE")],
    }, lineage)
    applied: list[dict] = []

    result = follow_stream(streams, "arn", {}, apply=lambda records: applied.extend(records) or 0,
                           save_checkpoint=lambda *a: None, idle_seconds=0, poll_interval=0)

    assert result.shards == 2 and result.records == 4
    assert [r["dynamodb"]["SequenceNumber"] for r in applied] == ["100", "101", "200", "201"]
    final = {c.key["pk"]["S"]: c for c in collapse(applied)}
    assert final["a"].image["v"] == {"S": "new"}
    assert final["b"].image is None  # deleted


def test_collapse_keeps_only_each_keys_last_change():
    changes = collapse([change("1", "a", "INSERT", "1"), change("2", "b", "INSERT"),
                        change("3", "a", "REMOVE"), change("4", "a", "INSERT", "3")])
    assert len(changes) == 2
    assert (changes[-1].key, changes[-1].image) == ({"pk": {"S": "a"}}, {"pk": {"S": "a"}, "v": {"S": "3"}})
    assert (changes[-1].first_sequence_number, changes[-1].sequence_number) == ("1", "4")


def follow_recording(streams, checkpoints=None, finished=None) -> list[str]:
    """Follow a synthetic stream to its end; the order in which records were applied and the gate
    (waiting for everything made before it began) would have opened."""
    events: list[str] = []
    gate_began = time.time()

    def position(applied_to: float) -> None:
        if applied_to >= gate_began and "caught up" not in events:
            events.append("caught up")

    follow_stream(streams, "arn", checkpoints or {}, save_checkpoint=lambda *a: None, idle_seconds=0,
                  poll_interval=0, finished_shards=finished, on_position=position,
                  apply=lambda records: events.extend(r["dynamodb"]["SequenceNumber"] for r in records) or 0)
    return events


def test_a_closed_parents_last_empty_page_does_not_open_the_gate_before_its_children_are_read():
    lineage = [shard("child", "200", parent="parent"), shard("parent", "100", end="199")]
    streams = FakeStreams({"parent": [], "child": [change("200", "a"), change("201", "b")]}, lineage)

    events = follow_recording(streams)

    assert events.index("caught up") > events.index("201"), events


class EmptyPageFirst(FakeStreams):
    """AWS may answer an empty page while records remain in the shard: here, each shard's first read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.answered_empty: set[str] = set()

    def get_records(self, ShardIterator, Limit):
        if ShardIterator.endswith(":0") and ShardIterator not in self.answered_empty:
            self.answered_empty.add(ShardIterator)
            return {"Records": [], "NextShardIterator": ShardIterator}
        return super().get_records(ShardIterator, Limit)


def test_one_empty_page_is_not_proof_of_being_caught_up():
    streams = EmptyPageFirst({"open": [change("100", "a"), change("101", "b")]}, [shard("open", "100")])

    events = follow_recording(streams)

    assert events.index("caught up") > events.index("101"), events


def test_a_checkpointed_shard_gone_from_the_stream_unread_is_a_gap_that_stops_live_sync():
    streams = FakeStreams({"current": [change("300", "a")]}, [shard("current", "300")])

    with pytest.raises(CannotContinue, match="shard expired-1 .* has expired .*--repair"):
        follow_recording(streams, checkpoints={"expired-1": "150"})
    # read to its end before it aged out: nothing is missing
    assert follow_recording(streams, checkpoints={"expired-1": "150"}, finished={"expired-1"})[0] == "300"
