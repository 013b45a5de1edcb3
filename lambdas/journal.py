"""What the Lambda tells a backfill running in another process: the live-sync journal.

The poller runs in the backfill's process and tells it, in memory, which keys it is about to write
(ferry/dynamo/backfill.py, `LiveWrites`). The Lambda runs elsewhere, so it keeps the same note in the
state table, one record per key (keys only, never values):

    migration = the migration id, part = "~journal#" + sha256 of the key
    key       the key itself (M)
    noted     the highest sequence number of a change to the key live sync is about to write
    applied   the highest sequence number of a change to the key live sync has written

`noted` is raised before the write is sent, `applied` after it landed (each only upwards, by a
condition), so:
- a backfill that reads the page's keys' records after its batch finds every key whose live write
  may have landed before the batch (the note came first), and writes it again under the write rule
  (`rewrite_live_written`), as with the in-process note (lambdas/write_rule.py has the argument);
- the catch-up gate knows a shard's last change before the gate began is dealt with when that key's
  `applied` reaches its sequence number: Lambda applies each shard in order and goes on only once
  a batch succeeded or was given up (after its retries, to the dead-letter queue). A key the
  target rejects counts as dealt with: it is Lambda's to retry and dead-letter, and verification
  names it.

While the backfill can write (the migration's phase, read once per batch), the Lambda writes
guarded and raises `noted`; afterwards it writes plainly. It raises `applied` in every phase, so a
gate on a later re-sync finds what it needs. Once the markers are cleared the `noted` numbers are
removed; the records, keys and numbers only, stay for the gates of later re-syncs (a --restart onto
a new stream deletes them: sequence numbers are only compared within one stream). Standard library
and boto3 only: shipped in the Lambda's zip.
"""

from __future__ import annotations

import hashlib
import logging
import time

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.dynamo_apply import key_identity
from lambdas.write_rule import version

log = logging.getLogger(__name__)

PREFIX = "~journal#"  # sorts after every other record of a migration: loading its state skips them
GUARDED_PHASES = {"preflight", "backfill"}  # the backfill may still write (ferry.state.Phase values)


def part(key: dict) -> str:
    return PREFIX + hashlib.sha256(key_identity(key).encode()).hexdigest()


def _raise(client, table: str, migration_id: str, key: dict, field: str, sequence_number: str) -> None:
    """Set `field` to the sequence number unless it holds a higher one already."""
    try:
        client.update_item(
            TableName=table, Key={"migration": {"S": migration_id}, "part": {"S": part(key)}},
            UpdateExpression="SET #f = :seq, #k = :key", ConditionExpression="attribute_not_exists(#f) OR #f < :seq",
            ExpressionAttributeNames={"#f": field, "#k": "key"},
            ExpressionAttributeValues={":seq": version(sequence_number), ":key": {"M": key}})
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def note(client, table: str, migration_id: str, changes: list[tuple[dict, str]]) -> None:
    """Before writing: live sync is about to write these (key, sequence number) changes."""
    for key, sequence_number in changes:
        _raise(client, table, migration_id, key, "noted", sequence_number)


def applied(client, table: str, migration_id: str, changes: list[tuple[dict, str]]) -> None:
    """After writing: these changes are in the target (or were refused as older)."""
    for key, sequence_number in changes:
        _raise(client, table, migration_id, key, "applied", sequence_number)


def read(client, table: str, migration_id: str, keys: list[dict], field: str = "noted") -> dict[str, str]:
    """{key identity: sequence number in `field`} for those of `keys` that have one (consistent)."""
    found: dict[str, str] = {}
    keys = list({part(key): key for key in keys}.values())  # BatchGetItem refuses a key asked twice
    for start in range(0, len(keys), 100):
        pending = {table: {"Keys": [{"migration": {"S": migration_id}, "part": {"S": part(k)}}
                                    for k in keys[start:start + 100]], "ConsistentRead": True}}
        for attempt in range(12):
            response = client.batch_get_item(RequestItems=pending)
            for item in response["Responses"].get(table, []):
                if field in item:
                    found[key_identity(item["key"]["M"])] = _sequence(item[field])
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(min(5.0, 0.05 * 2 ** attempt))
        else:
            raise RuntimeError(f"journal records of {migration_id} stayed unprocessed")
    return found


def records(client, table: str, migration_id: str, noted_only: bool = False):
    """The migration's journal records, read consistently (only those with a `noted` number, if asked)."""
    args = {"FilterExpression": "attribute_exists(noted)"} if noted_only else {}
    for page in client.get_paginator("query").paginate(
            TableName=table, KeyConditionExpression="migration = :m AND begins_with(part, :p)",
            ExpressionAttributeValues={":m": {"S": migration_id}, ":p": {"S": PREFIX}}, ConsistentRead=True, **args):
        yield from page["Items"]


def all_noted(client, table: str, migration_id: str) -> list[tuple[dict, str]]:
    """Every (key, noted sequence number) in the journal."""
    return [(item["key"]["M"], _sequence(item["noted"])) for item in records(client, table, migration_id, True)]


def forget_noted(client, table: str, migration_id: str) -> int:
    """Remove the `noted` numbers (the markers are cleared: no backfill reads them any more); the
    `applied` numbers stay for later gates. Returns how many were removed. Safe to rerun."""
    removed = 0
    for item in records(client, table, migration_id, noted_only=True):
        client.update_item(TableName=table, Key={"migration": item["migration"], "part": item["part"]},
                           UpdateExpression="REMOVE noted")
        removed += 1
    return removed


def clear(client, table: str, migration_id: str) -> int:
    """Delete the whole journal (a --restart onto a new stream: the numbers are another stream's)."""
    deleted = 0
    for item in records(client, table, migration_id):
        client.delete_item(TableName=table, Key={"migration": item["migration"], "part": item["part"]})
        deleted += 1
    return deleted


def _sequence(value: dict) -> str:
    """A stored (zero-padded) sequence number as the stream writes it."""
    return value["S"].lstrip("0") or "0"


def phase(client, table: str, migration_id: str) -> str | None:
    """The migration's phase, as the state store records it (its current generation's meta record)."""
    try:
        item = client.get_item(TableName=table, Key={"migration": {"S": migration_id}, "part": {"S": "meta"}},
                               ConsistentRead=True).get("Item")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return None  # no state table: no migration runs (Ferry creates it before the mapping is started)
    return item["phase"]["S"] if item and "phase" in item else None


PROGRESS = "live-sync"


def report_progress(client, table: str, migration_id: str, mode: str, lag_seconds: float, records: int) -> None:
    """Live sync's one progress record, whoever applies (the poller or the Lambda): when it last
    applied a batch, that batch's lag (the age of its oldest record), and how many records it held.
    `ferry status` shows it; one lag for both modes."""
    now = time.time()
    try:
        _put_progress(client, table, migration_id, mode, lag_seconds, records, now)
    except (ClientError, BotoCoreError) as error:  # a status record: never worth stopping live sync for
        log.warning("live-sync progress of %s not recorded (%s)", migration_id, type(error).__name__)


def _put_progress(client, table: str, migration_id: str, mode: str, lag_seconds: float, records: int,
                  now: float) -> None:
    client.put_item(TableName=table, Item={
        "migration": {"S": migration_id}, "part": {"S": PROGRESS}, "mode": {"S": mode},
        "lag_seconds": {"N": f"{max(0.0, lag_seconds):.3f}"}, "applied_at": {"N": f"{now:.3f}"},
        "records": {"N": str(records)},
        "updated_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))}})
