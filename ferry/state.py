"""The state table: where each migration records its phase and every checkpoint.

One small DynamoDB table on the target side (``ferry-state`` unless configured), created on first
use. Each migration is one partition:

    migration = "table:us-east-1/orders>us-east-1/orders-v2"
        part = "meta"            phase, segment count, stream ARN, generation
        part = "segment#000003"  last confirmed scan key, items, pages, done     (of one generation)
        part = "shard#<id>"      last applied stream sequence number             (of one generation)
        part = "dead#<seq>"      a change the target rejected: key and error     (of one generation)
        part = "markers"         live sync may have left write-rule markers in the target
        part = "lease"           which live sync applies the stream now, and until when

`--restart` starts a new generation with one write of the meta record: checkpoints of earlier
generations are ignored from that moment (and deleted afterwards, at leisure), so a restart killed
at any point never leaves an earlier run's segments counted as done. A segment's checkpoint is written only after the writes of its page are confirmed, so a run killed
at any moment restarts each segment at a page boundary it has fully written. Scan keys are stored as
raw DynamoDB AttributeValues (a map), so binary and 38-digit keys resume exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

from botocore.exceptions import ClientError

from lambdas.journal import PREFIX as JOURNAL_PREFIX
from lambdas.journal import PROGRESS


class Phase(StrEnum):
    """Where a table migration is, in the order it gets there (stored as its value)."""

    PREFLIGHT = "preflight"  # checked; the target and the migration's record exist
    BACKFILL = "backfill"  # the stream is enabled and the history is being copied
    CATCH_UP = "catch_up"  # the backfill is done; live sync is reading the stream's backlog
    VERIFY = "verify"  # comparing source and target
    DONE = "done"  # verified equal (or, with --no-verify, caught up)
    DIFFERENT = "different"  # verification found differences


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class SegmentProgress:
    """How far one scan segment has been copied. `last_key` None and not done: not started."""

    segment: int
    total_segments: int
    last_key: dict | None = None
    items: int = 0
    pages: int = 0
    done: bool = False
    generation: int = 0  # of the run it belongs to (see --restart)


@dataclass
class LiveSyncProgress:
    """Live sync's last batch (lambdas/journal.report_progress): by the poller or the Lambda."""

    mode: str
    lag_seconds: float  # the age of that batch's oldest record when it was applied
    applied_at: float  # epoch seconds
    records: int

    def since(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.applied_at)


@dataclass
class MigrationState:
    migration_id: str
    phase: Phase
    source: str
    target: str
    total_segments: int
    stream_arn: str | None = None
    started_at: str = ""
    updated_at: str = ""
    runs: int = 1
    generation: int = 0  # raised by --restart: checkpoints of other generations are ignored
    target_identity: str | None = None  # the target table the checkpoints were written for (ARN@created)
    segments: dict[int, SegmentProgress] = field(default_factory=dict)
    shards: dict[str, str] = field(default_factory=dict)  # shard -> last applied sequence number
    finished_shards: set[str] = field(default_factory=set)  # closed shards read to their end
    dead_letters: int = 0  # stream records whose change the target rejected, set aside
    live_sync: LiveSyncProgress | None = None  # its last batch, whoever applies it
    read_through: float | None = None  # epoch: the poller had applied every change made before this

    @property
    def copied(self) -> int:
        return sum(s.items for s in self.segments.values())

    @property
    def segments_done(self) -> int:
        return sum(s.done for s in self.segments.values())

    @property
    def backfilled(self) -> bool:
        """Every segment copied: no backfill write can come any more."""
        return self.total_segments > 0 and self.segments_done == self.total_segments

    def segment(self, n: int) -> SegmentProgress:
        return self.segments.get(n) or SegmentProgress(n, self.total_segments, generation=self.generation)


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


class StateStore:
    """Reads and writes migration state. Every write is a whole-item put: safe to repeat."""

    def __init__(self, client, table_name: str):
        self.client = client
        self.table_name = table_name

    # --- the table itself -------------------------------------------------------------------
    def exists(self) -> bool:
        try:
            self.client.describe_table(TableName=self.table_name)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise

    def ensure_table(self) -> bool:
        """Create the state table on first use; concurrent creators all end up waiting for ACTIVE.
        Returns whether this call created it."""
        created = False
        if not self.exists():
            try:
                self.client.create_table(
                    TableName=self.table_name,
                    KeySchema=[
                        {"AttributeName": "migration", "KeyType": "HASH"},
                        {"AttributeName": "part", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "migration", "AttributeType": "S"},
                        {"AttributeName": "part", "AttributeType": "S"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
            except ClientError as error:
                if error.response["Error"]["Code"] != "ResourceInUseException":
                    raise
        self.client.get_waiter("table_exists").wait(
            TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        return created

    # --- reading ----------------------------------------------------------------------------
    def load(self, migration_id: str) -> MigrationState | None:
        """The migration's state, or None if it was never started (or the table does not exist)."""
        try:
            items = self._query(migration_id)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return _to_state(migration_id, items)

    def list_all(self) -> list[MigrationState]:
        if not self.exists():
            return []
        by_migration: dict[str, list[dict]] = {}
        for page in self.client.get_paginator("scan").paginate(
                TableName=self.table_name, ConsistentRead=True, FilterExpression="NOT begins_with(part, :journal)",
                ExpressionAttributeValues={":journal": _s(JOURNAL_PREFIX)}):
            for item in page["Items"]:
                by_migration.setdefault(item["migration"]["S"], []).append(item)
        states = [_to_state(mid, items) for mid, items in sorted(by_migration.items())]
        return [s for s in states if s is not None]

    def _query(self, migration_id: str) -> list[dict]:
        paginator = self.client.get_paginator("query")
        items: list[dict] = []
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="migration = :m AND part < :journal",  # not live sync's journal
            ExpressionAttributeValues={":m": _s(migration_id), ":journal": _s(JOURNAL_PREFIX)},
            ConsistentRead=True,
        ):
            items.extend(page["Items"])
        return items

    # --- writing ----------------------------------------------------------------------------
    def begin(self, migration_id: str, source: str, target: str, total_segments: int,
              target_identity: str | None = None, generation: int = 0) -> None:
        """A new migration, or (with a higher `generation`) a restart of one: a single put, after
        which every checkpoint of another generation is ignored."""
        self._put_meta(migration_id, source, target, total_segments, phase=Phase.PREFLIGHT, generation=generation,
                       target_identity=target_identity)

    def set_phase(self, state: MigrationState, phase: Phase) -> None:
        state.phase = phase
        self._put_meta(
            state.migration_id,
            state.source,
            state.target,
            state.total_segments,
            phase=phase,
            stream_arn=state.stream_arn,
            started_at=state.started_at,
            runs=state.runs,
            generation=state.generation,
            target_identity=state.target_identity,
        )

    def _put_meta(self, migration_id, source, target, total_segments, phase, stream_arn=None, started_at=None, runs=1,
                  generation=0, target_identity=None):
        item = {
            "migration": _s(migration_id),
            "part": _s("meta"),
            "phase": _s(str(phase)),
            "source": _s(source),
            "target": _s(target),
            "total_segments": _n(total_segments),
            "started_at": _s(started_at or now_iso()),
            "updated_at": _s(now_iso()),
            "runs": _n(runs),
            "generation": _n(generation),
        }
        if stream_arn:
            item["stream_arn"] = _s(stream_arn)
        if target_identity:
            item["target_identity"] = _s(target_identity)
        self.client.put_item(TableName=self.table_name, Item=item)

    def save_segment(self, migration_id: str, progress: SegmentProgress) -> None:
        item = {
            "migration": _s(migration_id),
            "part": _s(f"segment#{progress.segment:06d}"),
            "segment": _n(progress.segment),
            "total_segments": _n(progress.total_segments),
            "items": _n(progress.items),
            "pages": _n(progress.pages),
            "done": {"BOOL": progress.done},
            "generation": _n(progress.generation),
            "updated_at": _s(now_iso()),
        }
        if progress.last_key is not None:
            item["last_key"] = {"M": progress.last_key}
        self.client.put_item(TableName=self.table_name, Item=item)

    def save_shard(self, migration_id: str, shard_id: str, sequence_number: str, generation: int = 0) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "migration": _s(migration_id),
                "part": _s(f"shard#{shard_id}"),
                "sequence_number": _s(sequence_number),
                "generation": _n(generation),
                "updated_at": _s(now_iso()),
            },
        )

    def save_shard_finished(self, migration_id: str, shard_id: str, generation: int = 0) -> None:
        """A closed shard read to its end: when it ages out of the stream, nothing of it is missing."""
        self.client.update_item(
            TableName=self.table_name, Key={"migration": _s(migration_id), "part": _s(f"shard#{shard_id}")},
            UpdateExpression="SET finished = :t, generation = :g, updated_at = :u",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":g": _n(generation), ":u": _s(now_iso())})

    def save_dead_letter(self, migration_id: str, sequence_number: str, key: dict, error: str,
                         generation: int = 0) -> None:
        """Set aside a change the target rejected (a poison record): its key and error, never its item."""
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "migration": _s(migration_id),
                "part": _s(f"dead#{sequence_number}"),
                "key": {"M": key},
                "error": _s(error),
                "generation": _n(generation),
                "updated_at": _s(now_iso()),
            },
        )

    def take_lease(self, migration_id: str, holder: str, seconds: float, replacing: str | None = None) -> str | None:
        """Take (or renew) the live-sync lease of a migration for `seconds`: one applier per pair at a
        time (`replacing`: a holder known to be dead). Returns None when taken; else the holder that
        has it (until it expires)."""
        now = time.time()
        condition = "attribute_not_exists(part) OR holder = :me OR expires_at < :now"
        values = {":me": _s(holder), ":now": _n(int(now))}
        if replacing:
            condition += " OR holder = :dead"
            values[":dead"] = _s(replacing)
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={"migration": _s(migration_id), "part": _s("lease"), "holder": _s(holder),
                      "expires_at": _n(int(now + seconds)), "updated_at": _s(now_iso())},
                ConditionExpression=condition, ExpressionAttributeValues=values)
            return None
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        item = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key={"migration": _s(migration_id), "part": _s("lease")}).get("Item", {})
        return item.get("holder", {}).get("S", "another live sync")

    def read_lease(self, migration_id: str) -> tuple[str, float] | None:
        """(holder, expires at) of an unexpired lease, or None."""
        if not self.exists():
            return None
        item = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key={"migration": _s(migration_id), "part": _s("lease")}).get("Item")
        if item is None or float(item["expires_at"]["N"]) < time.time():
            return None
        return item["holder"]["S"], float(item["expires_at"]["N"])

    def release_lease(self, migration_id: str, holder: str) -> None:
        """Give the lease back, if this holder still has it."""
        try:
            self.client.delete_item(TableName=self.table_name, Key={"migration": _s(migration_id), "part": _s("lease")},
                                    ConditionExpression="holder = :me", ExpressionAttributeValues={":me": _s(holder)})
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def save_read_through(self, migration_id: str, moment: float) -> None:
        """The poller has applied every change made before `moment` (its gate's proof): a later run
        can tell whether the stream's retention still covers the time since."""
        self.client.put_item(TableName=self.table_name, Item={
            "migration": _s(migration_id), "part": _s("read-through"), "at": {"N": f"{moment:.3f}"},
            "updated_at": _s(now_iso())})

    def note_markers(self, migration_id: str) -> None:
        """Record, before live sync's first guarded write, that the target may hold write-rule
        markers (versions, tombstones) to clear once the backfill is done."""
        self.client.put_item(TableName=self.table_name, Item={
            "migration": _s(migration_id), "part": _s("markers"), "updated_at": _s(now_iso())})

    def markers_noted(self, migration_id: str) -> bool:
        return "Item" in self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                              Key={"migration": _s(migration_id), "part": _s("markers")})

    def markers_cleared(self, migration_id: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"migration": _s(migration_id), "part": _s("markers")})

    # --- plain records: a plan's cutover steps and parameters, holds (ferry/cutover.py) ---------
    def put_record(self, partition: str, part: str, fields: dict[str, str | None], version: int | None = None) -> bool:
        """One whole-item put of string fields (None: left out): safe to repeat. With `version`, the
        put lands only over that version of the record (0: none yet) and stores version + 1; returns
        False when another writer got there first."""
        item = {"migration": _s(partition), "part": _s(part), "updated_at": _s(now_iso())}
        item |= {name: _s(value) for name, value in fields.items() if value is not None}
        if version is None:
            self.client.put_item(TableName=self.table_name, Item=item)
            return True
        item["version"] = _n(version + 1)
        try:
            self.client.put_item(TableName=self.table_name, Item=item,
                                 ConditionExpression="attribute_not_exists(part) OR version = :v",
                                 ExpressionAttributeValues={":v": _n(version)})
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False

    def get_record(self, partition: str, part: str) -> dict[str, str] | None:
        if not self.exists():
            return None
        item = self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                    Key={"migration": _s(partition), "part": _s(part)}).get("Item")
        if item is None:
            return None
        return {name: value.get("S", value.get("N")) for name, value in item.items()
                if ("S" in value or "N" in value) and name not in ("migration", "part")}

    def delete_record(self, partition: str, part: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"migration": _s(partition), "part": _s(part)})

    def forget_stream_position(self, migration_id: str) -> int:
        """Delete the shard checkpoints and the read-through moment: live sync then starts from the
        oldest record the stream still holds (replaying what is there, in order)."""
        stale = [item for item in self._query(migration_id)
                 if item["part"]["S"].startswith("shard#") or item["part"]["S"] == "read-through"]
        stale.sort(key=lambda item: item["part"]["S"] == "read-through")  # last: a kill in between is redone
        for item in stale:
            self.client.delete_item(TableName=self.table_name, Key={"migration": item["migration"], "part": item["part"]})
        return len(stale)

    def forget_stale(self, migration_id: str, generation: int) -> int:
        """Delete the checkpoints of generations other than `generation` (after a --restart; they are
        ignored already, so a kill in here changes nothing). Returns how many were deleted."""
        stale = [item for item in self._query(migration_id)
                 if item["part"]["S"].startswith(GENERATIONAL) and _generation(item) != generation]
        for item in stale:
            self.client.delete_item(TableName=self.table_name, Key={"migration": item["migration"], "part": item["part"]})
        return len(stale)


GENERATIONAL = ("segment#", "shard#", "dead#")


def _generation(item: dict) -> int:
    return int(item.get("generation", {"N": "0"})["N"])


def _to_state(migration_id: str, items: list[dict]) -> MigrationState | None:
    meta = next((i for i in items if i["part"]["S"] == "meta"), None)
    if meta is None:
        return None
    state = MigrationState(
        migration_id=migration_id,
        phase=Phase(meta["phase"]["S"]),
        source=meta["source"]["S"],
        target=meta["target"]["S"],
        total_segments=int(meta["total_segments"]["N"]),
        stream_arn=meta.get("stream_arn", {}).get("S"),
        started_at=meta["started_at"]["S"],
        updated_at=meta["updated_at"]["S"],
        runs=int(meta.get("runs", {"N": "1"})["N"]),
        generation=_generation(meta),
        target_identity=meta.get("target_identity", {}).get("S"),
    )
    for item in items:
        part = item["part"]["S"]
        if part.startswith(GENERATIONAL) and _generation(item) != state.generation:
            continue  # an earlier run's, before a --restart
        if part.startswith("segment#"):
            progress = SegmentProgress(
                segment=int(item["segment"]["N"]),
                total_segments=int(item["total_segments"]["N"]),
                last_key=item["last_key"]["M"] if "last_key" in item else None,
                items=int(item["items"]["N"]),
                pages=int(item["pages"]["N"]),
                done=item["done"]["BOOL"],
                generation=state.generation,
            )
            state.segments[progress.segment] = progress
        elif part.startswith("shard#"):
            shard_id = part.removeprefix("shard#")
            if "sequence_number" in item:
                state.shards[shard_id] = item["sequence_number"]["S"]
            if item.get("finished", {}).get("BOOL"):
                state.finished_shards.add(shard_id)
        elif part.startswith("dead#"):
            state.dead_letters += 1
        elif part == "read-through":
            state.read_through = float(item["at"]["N"])
        elif part == PROGRESS:
            state.live_sync = LiveSyncProgress(item["mode"]["S"], float(item["lag_seconds"]["N"]),
                                               float(item["applied_at"]["N"]), int(item["records"]["N"]))
    return state
