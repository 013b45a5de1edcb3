"""Apply DynamoDB stream records to a target table.

The same function runs in the deployed Lambda, in Ferry's local poller and in the flow's catch-up
step. Guarantees:
- per-key order: only the last record of each key in a batch matters, because every record carries
  the item's whole new image (or is a delete), so the batch collapses to one write per key;
- idempotent: puts of whole images and deletes by key, so applying a record twice changes nothing;
- a record without a new image (a KEYS_ONLY stream) is resolved by a consistent read of the source;
- a key the target rejects (a poison record) does not block the others: the batch falls back to one
  write per key, and the rejected keys are returned with the sequence number of their first record,
  so a caller can report them (Lambda's ReportBatchItemFailures) or set them aside (the poller);
- nothing of the item's contents is logged, only counts and sequence numbers.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from lambdas.batch_write import write_all, write_batch

log = logging.getLogger(__name__)

RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
             "InternalServerError", "ServiceUnavailable"}


@dataclass
class Rejected:
    """A key the target refused; `sequence_number` is its first record in the batch."""

    sequence_number: str
    key: dict
    error: str


@dataclass
class ApplyResult:
    records: int = 0
    puts: int = 0
    deletes: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def json_form(value):
    """DynamoDB values as DynamoDB JSON: binary becomes base64 text, as the AWS CLI shows it."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: json_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_form(v) for v in value]
    return value


def key_identity(keys: dict) -> str:
    """A string that is equal for two records exactly when they name the same primary key."""
    return json.dumps(json_form(keys), sort_keys=True)


@dataclass
class KeyChange:
    """The net effect of a batch on one key: its final write, and its first record's sequence number."""

    key: dict
    first_sequence_number: str
    write: dict | None = None  # None: resolve from the source (no new image in the stream)


def collapse(records: list[dict]) -> list[KeyChange]:
    """Records, oldest first, reduced to one change per key (its last), in order of last change."""
    changes: dict[str, KeyChange] = {}
    for record in records:
        change = record["dynamodb"]
        identity = key_identity(change["Keys"])
        previous = changes.pop(identity, None)
        first = previous.first_sequence_number if previous else change["SequenceNumber"]
        if record["eventName"] == "REMOVE":
            write = {"DeleteRequest": {"Key": change["Keys"]}}
        elif "NewImage" in change:
            write = {"PutRequest": {"Item": change["NewImage"]}}
        else:
            write = None
        changes[identity] = KeyChange(change["Keys"], first, write)
    return list(changes.values())


def resolve_from_source(changes: list[KeyChange], source_client, source_table: str | None) -> None:
    """Give changes without a new image the source's current state: its item, or a delete."""
    for change in changes:
        if change.write is not None:
            continue
        if source_client is None or not source_table:
            raise ValueError("stream records carry no new image: a source table to re-read is required")
        item = source_client.get_item(TableName=source_table, Key=change.key, ConsistentRead=True).get("Item")
        change.write = {"PutRequest": {"Item": item}} if item else {"DeleteRequest": {"Key": change.key}}


def apply_stream_records(client, table: str, records: list[dict], pool=None, source_client=None,
                         source_table: str | None = None) -> ApplyResult:
    """Make `table` reflect `records` (DynamoDB Streams records in boto3's client form, oldest first).

    Safe to retry: a partially applied batch applied again ends in the same state. Throttling and
    other transient errors raise (the caller retries); a key the target rejects is returned in
    `rejected` and every other key is still applied.
    """
    changes = collapse(records)
    resolve_from_source(changes, source_client, source_table)
    result = ApplyResult(records=len(records))
    try:
        write_all(client, table, [c.write for c in changes], pool=pool)
    except ClientError as error:
        if error.response["Error"]["Code"] in RETRYABLE:
            raise
        result.rejected = apply_one_by_one(client, table, changes)
    rejected = {key_identity(r.key) for r in result.rejected}
    for change in changes:
        if key_identity(change.key) not in rejected:
            if "PutRequest" in change.write:
                result.puts += 1
            else:
                result.deletes += 1
    log.info("applied %d stream records to %s: %d puts, %d deletes, %d rejected",
             result.records, table, result.puts, result.deletes, len(result.rejected))
    return result


def apply_one_by_one(client, table: str, changes: list[KeyChange]) -> list[Rejected]:
    """A batch was rejected: write each key alone to find which ones the target refuses."""
    rejected = []
    for change in changes:
        try:
            write_batch(client, table, [change.write])
        except ClientError as error:
            if error.response["Error"]["Code"] in RETRYABLE:
                raise
            rejected.append(Rejected(change.first_sequence_number, change.key, error.response["Error"]["Code"]))
            log.warning("target %s rejected the change of record %s: %s", table, change.first_sequence_number,
                        error.response["Error"]["Code"])
    return rejected
