"""The source table's DynamoDB Stream: enabling it before the backfill, and replaying it after.

The stream is enabled before the first item is scanned, so every change made while the backfill
runs is in the stream. Replaying those changes after the backfill, in order per key, makes the target
converge to the source: a change the backfill already saw is re-applied harmlessly, one it missed is
applied, and a delete it raced with is applied after the copy it would otherwise have been undone by.

Replay follows shard lineage (a parent shard is drained before its children) and checkpoints each
shard's last applied sequence number, so an interrupted replay resumes without loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from botocore.exceptions import ClientError

from ferry.errors import FerryError

STREAM_VIEW = "NEW_AND_OLD_IMAGES"
USABLE_VIEWS = {"NEW_AND_OLD_IMAGES", "NEW_IMAGE"}  # replay needs each change's new image


def check_stream_compatible(description: dict) -> None:
    """Raise if the table already has a stream Ferry cannot replay (no new images)."""
    spec = description.get("StreamSpecification") or {}
    if spec.get("StreamEnabled") and spec.get("StreamViewType") not in USABLE_VIEWS:
        raise FerryError(
            f"source table {description['TableName']!r} already has a stream with view type "
            f"{spec.get('StreamViewType')}, which carries no new item images; switch it to "
            f"{STREAM_VIEW} (disable and re-enable the stream) and run again"
        )


def enable_stream(client, streams_client, table: str, timeout: float = 120) -> str:
    """Make sure `table` has a usable stream; reuse a compatible one. Returns the stream ARN once ENABLED."""
    description = client.describe_table(TableName=table)["Table"]
    check_stream_compatible(description)
    if not (description.get("StreamSpecification") or {}).get("StreamEnabled"):
        try:
            client.update_table(
                TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW}
            )
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("ValidationException", "ResourceInUseException"):
                raise
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        description = client.describe_table(TableName=table)["Table"]
    stream_arn = description["LatestStreamArn"]
    deadline = time.monotonic() + timeout
    while streams_client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["StreamStatus"] != "ENABLED":
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream of {table} was not ENABLED after {timeout:.0f}s")
        time.sleep(1)
    return stream_arn


def list_shards(streams_client, stream_arn: str) -> list[dict]:
    shards: list[dict] = []
    kwargs = {"StreamArn": stream_arn}
    while True:
        description = streams_client.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(description["Shards"])
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        kwargs["ExclusiveStartShardId"] = last


def lineage_order(shards: list[dict]) -> list[dict]:
    """Shards ordered so that every parent comes before its children (a parent that has aged out
    of the stream is treated as absent)."""
    by_id = {s["ShardId"]: s for s in shards}
    ordered: list[dict] = []
    placed: set[str] = set()

    def place(shard: dict) -> None:
        if shard["ShardId"] in placed:
            return
        parent = by_id.get(shard.get("ParentShardId", ""))
        if parent is not None:
            place(parent)
        placed.add(shard["ShardId"])
        ordered.append(shard)

    for shard in sorted(shards, key=lambda s: s["SequenceNumberRange"]["StartingSequenceNumber"]):
        place(shard)
    return ordered


@dataclass
class ReplayResult:
    records: int = 0
    shards: int = 0


def replay_stream(
    streams_client,
    stream_arn: str,
    checkpoints: dict[str, str],
    apply: Callable[[list[dict]], None],
    save_checkpoint: Callable[[str, str], None],
    idle_polls: int = 2,
    page_limit: int = 1000,
) -> ReplayResult:
    """Apply every record after each shard's checkpoint (from TRIM_HORIZON without one), until
    closed shards are exhausted and open shards have returned `idle_polls` empty reads in a row.

    `apply` is called with each page of records in stream order; the shard's checkpoint is saved
    after it returns, so a record is applied at least once and never skipped.
    """
    result = ReplayResult()
    for shard in lineage_order(list_shards(streams_client, stream_arn)):
        shard_id = shard["ShardId"]
        after = checkpoints.get(shard_id)
        iterator_args = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        try:
            iterator = streams_client.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **iterator_args)[
                "ShardIterator"
            ]
        except ClientError as error:
            if error.response["Error"]["Code"] == "TrimmedDataAccessException":
                raise FerryError(
                    f"stream records of shard {shard_id} after the last applied one have expired (24 h "
                    "retention): changes may be missing; run again with --restart to copy the table afresh"
                ) from error
            raise
        result.shards += 1
        empty = 0
        while iterator and empty < idle_polls:
            page = streams_client.get_records(ShardIterator=iterator, Limit=page_limit)
            records = page["Records"]
            iterator = page.get("NextShardIterator")
            if not records:
                empty += 1
                continue
            empty = 0
            apply(records)
            save_checkpoint(shard_id, records[-1]["dynamodb"]["SequenceNumber"])
            checkpoints[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
            result.records += len(records)
    return result
