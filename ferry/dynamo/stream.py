"""The source table's DynamoDB Stream: enabling it before the backfill, and replaying it after.

The stream is enabled before the first item is scanned, so every change made while the backfill
runs is in the stream. Replaying those changes after the backfill, in order per key, makes the target
converge to the source: a change the backfill already saw is re-applied harmlessly, one it missed is
applied, and a delete it raced with is applied after the copy it would otherwise have been undone by.

Replay follows shard lineage (a parent shard is drained before its children) and checkpoints each
shard's last applied sequence number, so an interrupted replay resumes without loss.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from botocore.exceptions import ClientError

from ferry.errors import BadInput, CannotContinue

STREAM_VIEW = "NEW_AND_OLD_IMAGES"
USABLE_VIEWS = {"NEW_AND_OLD_IMAGES", "NEW_IMAGE"}  # replay needs each change's new image


def stream_problem(description: dict) -> str | None:
    """Why the table's existing stream cannot be replayed (it carries no new images), or None."""
    spec = description.get("StreamSpecification") or {}
    if spec.get("StreamEnabled") and spec.get("StreamViewType") not in USABLE_VIEWS:
        return (f"source table {description['TableName']!r} already has a stream with view type "
                f"{spec.get('StreamViewType')}, which carries no new item images; switch it to "
                f"{STREAM_VIEW} (disable and re-enable the stream) and run again")
    return None


def check_stream_compatible(description: dict) -> None:
    """Preflight: refuse a table whose stream Ferry cannot replay, before anything is written."""
    if problem := stream_problem(description):
        raise BadInput(problem)


def stream_enabled(description: dict) -> bool:
    return bool((description.get("StreamSpecification") or {}).get("StreamEnabled"))


def stream_replaced(description: dict, stream_arn: str) -> bool:
    """Whether the table no longer has `stream_arn` as its enabled stream (disabled, or replaced by a
    new one): the changes made in between are in no stream Ferry can read."""
    enabled = (description.get("StreamSpecification") or {}).get("StreamEnabled")
    return not enabled or description.get("LatestStreamArn") != stream_arn


def enable_stream(client, streams_client, table: str, timeout: float = 120) -> str:
    """Make sure `table` has a usable stream; reuse a compatible one. Returns the stream ARN once ENABLED."""
    description = client.describe_table(TableName=table)["Table"]
    if problem := stream_problem(description):  # changed since preflight
        raise CannotContinue(problem)
    if not stream_enabled(description):
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
class FollowResult:
    records: int = 0
    shards: int = 0
    rejected: int = 0
    lag_seconds: list[float] = field(default_factory=list)  # per batch read: age of its oldest record


def record_age(record: dict, now: datetime) -> float:
    created = record["dynamodb"].get("ApproximateCreationDateTime")
    if created is None:
        return 0.0
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return max(0.0, (now - created).total_seconds())


STREAM_RETENTION_HOURS = 24
RETENTION_MARGIN_HOURS = 4


def lag_warning(lag_seconds: float) -> str | None:
    """A warning, with the numbers, when live sync's lag approaches the stream's 24-hour retention:
    records older than that expire before they are applied (the backfill's length does not matter:
    live sync runs beside it)."""
    if lag_seconds < (STREAM_RETENTION_HOURS - RETENTION_MARGIN_HOURS) * 3600:
        return None
    return (f"live sync is {lag_seconds / 3600:.1f} h behind the stream, close to its {STREAM_RETENTION_HOURS} h "
            "retention: records older than that expire before they are applied; keep live sync running (it is "
            "not rate-limited), and check the target's write capacity and the poller's errors")


EMPTY_PAGES_AT_END = 2  # one empty page proves nothing: AWS returns them while records remain


def check_no_gap(checkpoints: dict[str, str], finished: set[str], listed: dict[str, dict]) -> None:
    """A shard this migration has applied records from, not read to its end, and no longer in the
    stream: its later records expired unread (a pause longer than the 24-hour retention)."""
    for shard_id, sequence_number in checkpoints.items():
        if shard_id not in listed and shard_id not in finished:
            raise CannotContinue(
                f"shard {shard_id} of the stream, applied up to record {sequence_number}, has expired (24 h "
                "retention) before live sync read the rest of it: changes may be missing from the target; run "
                "'ferry verify table SOURCE TARGET --repair' (safe while live sync runs), or run the migration "
                "again with --restart"
            )


@dataclass
class ShardPosition:
    """How far one open shard is known to be applied, as a wall-clock time: every change made in it
    before `applied_to` has been applied."""

    applied_to: float = float("-inf")
    empty_pages: int = 0  # in a row, up to the last read
    previous_empty_at: float = 0.0  # when the empty page before the last one was asked for

    def read(self, records: list[dict], requested_at: float) -> None:
        if records:
            self.empty_pages = 0
            created = records[-1]["dynamodb"].get("ApproximateCreationDateTime")
            if created is not None:  # AWS's clock, bounded by ours: a page asked for before t proves nothing at t
                self.applied_to = max(self.applied_to, min(_epoch(created), requested_at))
            return
        self.empty_pages += 1
        if self.empty_pages >= EMPTY_PAGES_AT_END:  # at its end as of the first of the last two empty pages
            self.applied_to = max(self.applied_to, self.previous_empty_at)
        self.previous_empty_at = requested_at


def _epoch(created) -> float:
    if isinstance(created, datetime):
        return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()
    return float(created)


def follow_stream(
    streams_client,
    stream_arn: str,
    checkpoints: dict[str, str],
    apply: Callable[[list[dict]], int],
    save_checkpoint: Callable[[str, str], None],
    idle_seconds: float | None = 1.0,
    stop: threading.Event | None = None,
    on_position: Callable[[float], None] | None = None,
    poll_interval: float = 0.25,
    page_limit: int = 1000,
    on_batch: Callable[[int, float], None] | None = None,
    finished_shards: set[str] | None = None,
    on_shard_finished: Callable[[str], None] | None = None,
) -> FollowResult:
    """Apply every record after each shard's checkpoint (TRIM_HORIZON without one), shard by shard
    in lineage order (a child shard starts only once its parent is drained), until every shard has
    been idle for `idle_seconds` (None: until `stop` is set).

    `apply` gets each page of records in stream order and returns how many it rejected; the shard's
    checkpoint is saved after it returns, so a record is applied at least once and never skipped.
    A closed shard read to its end is reported to `on_shard_finished` (and given in `finished_shards`
    next time), so that a shard that later ages out of the stream is known to have been read whole;
    a checkpointed shard gone from the stream unread is a gap: CannotContinue, naming the remedy.

    After each round over the shards, `on_position(t)` says that every change made before the
    wall-clock time `t` has been applied: in each open shard, a record created at `t` or later was
    applied, or EMPTY_PAGES_AT_END empty pages in a row came back since `t` (one empty page proves
    nothing); a round in which a shard closed says nothing, since its children are unread. Under
    continuous writes `t` keeps up with the clock, minus the lag. `stop` ends the loop after the
    batch in hand.
    """
    result = FollowResult()
    finished: set[str] = set(finished_shards or ())
    iterators: dict[str, str] = {}
    positions: dict[str, ShardPosition] = {}
    refresh_at = 0.0
    idle_since: float | None = None
    first_listing = True
    while not (stop and stop.is_set()):
        if time.monotonic() >= refresh_at:
            known = {s["ShardId"]: s for s in lineage_order(list_shards(streams_client, stream_arn))}
            if first_listing:
                check_no_gap(checkpoints, finished, known)
                first_listing = False
            for shard_id, shard in known.items():
                parent = shard.get("ParentShardId")
                parent_done = parent is None or parent not in known or parent in finished
                if shard_id not in finished and shard_id not in iterators and parent_done:
                    iterators[shard_id] = shard_iterator(streams_client, stream_arn, shard_id, checkpoints.get(shard_id))
                    positions[shard_id] = ShardPosition()
                    result.shards += 1
            refresh_at = time.monotonic() + 10
        found, closed = 0, False
        for shard_id in list(iterators):
            requested_at = time.time()
            try:
                page = streams_client.get_records(ShardIterator=iterators[shard_id], Limit=page_limit)
            except ClientError as error:
                if error.response["Error"]["Code"] != "ExpiredIteratorException":
                    raise
                iterators[shard_id] = shard_iterator(streams_client, stream_arn, shard_id, checkpoints.get(shard_id))
                continue
            records = page["Records"]
            if records:
                lag = record_age(records[0], datetime.now(timezone.utc))
                result.lag_seconds.append(lag)
                result.rejected += apply(records) or 0
                checkpoints[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                save_checkpoint(shard_id, checkpoints[shard_id])
                result.records += len(records)
                found += len(records)
                if on_batch:
                    on_batch(len(records), lag)
            positions[shard_id].read(records, requested_at)
            if page.get("NextShardIterator"):
                iterators[shard_id] = page["NextShardIterator"]
            else:  # a closed shard, read to its end: its children may start now
                del iterators[shard_id], positions[shard_id]
                finished.add(shard_id)
                if on_shard_finished:
                    on_shard_finished(shard_id)
                closed = True
                refresh_at = 0.0
        if not closed and positions and on_position is not None:  # no open shard read: nothing proven
            on_position(min(p.applied_to for p in positions.values()))
        if found or closed:
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        at_end = all(p.empty_pages >= EMPTY_PAGES_AT_END for p in positions.values())
        if idle_seconds is not None and at_end and time.monotonic() - idle_since >= idle_seconds:
            break
        time.sleep(poll_interval)
    return result


def shard_iterator(streams_client, stream_arn: str, shard_id: str, after: str | None) -> str:
    """An iterator just after the shard's checkpoint, or at its oldest record without one."""
    args = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after} if after
            else {"ShardIteratorType": "TRIM_HORIZON"})
    try:
        return streams_client.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **args)["ShardIterator"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "TrimmedDataAccessException":
            raise CannotContinue(
                f"stream records of shard {shard_id} after the last applied one have expired (24 h "
                "retention): changes may be missing; run again with --restart (it copies everything again and its verification repairs what the copy cannot see)"
            ) from error
        raise


def last_changes_before(streams_client, stream_arn: str, moment: float) -> dict[str, tuple[dict, str]]:
    """Read-only, for an applier in another process (the Lambda): each shard's last change made
    before the wall-clock time `moment`, as (key, sequence number), found by reading the stream from
    TRIM_HORIZON in lineage order until every open shard is read past `moment` (the same proof as
    the poller's gate). Once those changes are applied, so is every change made before `moment`."""
    last: dict[str, tuple[dict, str]] = {}
    page: list[dict] = []
    past = threading.Event()

    def remember(records: list[dict]) -> int:
        page[:] = [r for r in records if _epoch(r["dynamodb"].get("ApproximateCreationDateTime", 0)) <= moment]
        return 0

    def at(shard_id: str, _sequence_number: str) -> None:
        if page:
            last[shard_id] = (page[-1]["dynamodb"]["Keys"], page[-1]["dynamodb"]["SequenceNumber"])

    def position(applied_to: float) -> None:
        if applied_to >= moment:
            past.set()

    follow_stream(streams_client, stream_arn, {}, remember, at, idle_seconds=None, stop=past, on_position=position)
    return last
