"""What the Lambda tells a backfill running in another process: the live-sync journal.

The poller runs in the backfill's process and tells it, in memory, which keys it is about to write
(ferry/dynamo/backfill.py, `LiveWrites`). The Lambda runs elsewhere, so it keeps the same note in the
state table, one record per key (keys only, never values):

    migration = the migration id, part = "noted#" + sha256 of the key
    key       the key itself (M)
    noted     the highest sequence number of a change to the key live sync is about to write
    applied   the highest sequence number of a change to the key live sync has written

`noted` is raised before the write is sent, `applied` after it landed (each only upwards, by a
condition), so:
- a backfill that reads the page's keys' records after its batch finds every key whose live write
  may have landed before the batch (the note came first), and writes it again under the write rule
  (`rewrite_live_written`): exact for any interleaving, like the in-process note;
- the catch-up gate knows a shard's last change before the gate began is applied when that key's
  `applied` reaches its sequence number (the Lambda applies each shard in order and retries a failed
  batch before going on, so every earlier record of that shard was dealt with).

Which of these the Lambda does follows the migration's phase (read once per batch): while the
backfill can write, guarded writes and both numbers; then, until the migration ends, plain writes
and `applied`; afterwards, plain writes only. The records are deleted when the migration's markers
are cleared. Standard library and boto3 only: shipped in the Lambda's zip.
"""

from __future__ import annotations

import hashlib
import time

from botocore.exceptions import ClientError

from lambdas.dynamo_apply import key_identity
from lambdas.write_rule import version

PREFIX = "noted#"
GUARDED_PHASES = {"preflight", "backfill"}  # the backfill may still write (ferry.state.Phase values)
FINISHED_PHASES = {"done", "different"}


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
    for start in range(0, len(keys), 100):
        pending = {table: {"Keys": [{"migration": {"S": migration_id}, "part": {"S": part(k)}}
                                    for k in keys[start:start + 100]], "ConsistentRead": True}}
        for attempt in range(12):
            response = client.batch_get_item(RequestItems=pending)
            for item in response["Responses"].get(table, []):
                if field in item:
                    found[key_identity(item["key"]["M"])] = item[field]["S"].lstrip("0") or "0"
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(min(5.0, 0.05 * 2 ** attempt))
        else:
            raise RuntimeError(f"journal records of {migration_id} stayed unprocessed")
    return found


def clear(client, table: str, migration_id: str) -> int:
    """Delete the migration's journal (its markers are cleared: nothing reads it any more)."""
    deleted = 0
    paginator = client.get_paginator("query")
    for page in paginator.paginate(TableName=table, KeyConditionExpression="migration = :m AND begins_with(part, :p)",
                                   ExpressionAttributeValues={":m": {"S": migration_id}, ":p": {"S": PREFIX}},
                                   ProjectionExpression="migration, part", ConsistentRead=True):
        for item in page["Items"]:
            client.delete_item(TableName=table, Key=item)
            deleted += 1
    return deleted


def phase(client, table: str, migration_id: str) -> str | None:
    """The migration's phase, as the state store records it (its current generation's meta record)."""
    item = client.get_item(TableName=table, Key={"migration": {"S": migration_id}, "part": {"S": "meta"}},
                           ConsistentRead=True).get("Item")
    return item["phase"]["S"] if item and "phase" in item else None
