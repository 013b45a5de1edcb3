"""Apply DynamoDB stream records to a target table, through the one write rule (write_rule.py).

The same function runs in the deployed Lambda and in Ferry's local poller. Guarantees:
- per-key order: only the last record of each key in a batch matters, because every record carries
  the item's whole new image (or is a delete), so the batch collapses to one write per key, tagged
  with that record's sequence number;
- idempotent and order-safe: while the backfill runs (`guarded`), a write lands only over an older
  state, so a retried, duplicated or replayed batch changes nothing that is newer;
- a record without a new image (a KEYS_ONLY stream) is resolved by a consistent read of the source;
- an error about one item (the target rejects its content: a validation error, an item too large)
  makes that key a poison record: it does not block the others, and it is returned with the
  sequence number of its first record, so a caller can report it (Lambda's ReportBatchItemFailures)
  or set it aside (the poller). Any other error - access denied, expired credentials, a missing
  target, throttling that outlasted the retries - is about every item: it raises, so the applier
  stops (and retries) instead of dead-lettering the whole stream;
- in a cutover's switch window (`only_over_unchanged`: the service may already write to the target),
  a change lands only where the target still holds the state the source had before it (the first
  record's old image, compared canonically, then checked again by the write's own condition:
  write_rule.apply_over_unchanged): a key the service has changed in the target since keeps the
  service's write (counted as `kept`);
- nothing of the item's contents is logged, only counts and sequence numbers.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from lambdas.write_rule import Change, apply_change, apply_over_unchanged

log = logging.getLogger(__name__)

ITEM_ERRORS = {"ValidationException"}  # about the item's content; every other error is about all items


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
    superseded: int = 0  # keys already holding a newer state: nothing written
    kept: int = 0  # switch window: keys the target's own service changed since; its write kept
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
    """The net effect of a batch on one key: its last record's image and sequence number, and its
    first record's sequence number (where a retry must start)."""

    key: dict
    first_sequence_number: str
    sequence_number: str
    image: dict | None  # None: deleted
    resolved: bool = True  # False: the stream carries no new image; read the source
    before: dict | None = None  # the first record's old image (None: the key did not exist)
    before_known: bool = False  # False: the stream carries no old image (not a NEW_AND_OLD_IMAGES stream)

    def change(self) -> Change:
        return Change(self.key, self.sequence_number, self.image)


def collapse(records: list[dict]) -> list[KeyChange]:
    """Records, oldest first, reduced to one change per key (its last), in order of last change."""
    changes: dict[str, KeyChange] = {}
    for record in records:
        change = record["dynamodb"]
        identity = key_identity(change["Keys"])
        previous = changes.pop(identity, None)
        first = previous.first_sequence_number if previous else change["SequenceNumber"]
        removed = record["eventName"] == "REMOVE"
        if previous:
            before, before_known = previous.before, previous.before_known
        else:
            before = change.get("OldImage")
            before_known = record["eventName"] == "INSERT" or "OldImage" in change
        changes[identity] = KeyChange(change["Keys"], first, change["SequenceNumber"],
                                      None if removed else change.get("NewImage"),
                                      resolved=removed or "NewImage" in change, before=before,
                                      before_known=before_known)
    return list(changes.values())


def canonical(item: dict | None):
    """An item in one form whatever the order of its maps' keys and its sets' members."""
    return None if item is None else {name: canonical_value(value) for name, value in sorted(item.items())}


def canonical_value(value: dict):
    """One attribute value ({type: value}), by its type tag."""
    (tag, inner), = value.items()
    if tag in ("SS", "NS", "BS"):
        return tag, sorted(json.dumps(json_form(member)) for member in inner)
    if tag == "M":
        return tag, canonical(inner)
    if tag == "L":
        return tag, [canonical_value(member) for member in inner]
    return tag, json_form(inner)


def changed_since(client, table: str, change: KeyChange) -> bool:
    """Whether the target's item is no longer the state the source had before this change."""
    current = client.get_item(TableName=table, Key=change.key, ConsistentRead=True).get("Item")
    return canonical(current) != canonical(change.before)


def resolve_from_source(changes: list[KeyChange], source_client, source_table: str | None) -> None:
    """Give changes without a new image the source's current state: its item, or a delete. The
    state read is at least as new as the record's, and later records are applied after it."""
    for change in changes:
        if change.resolved:
            continue
        if source_client is None or not source_table:
            raise ValueError("stream records carry no new image: a source table to re-read is required")
        change.image = source_client.get_item(TableName=source_table, Key=change.key, ConsistentRead=True).get("Item")
        change.resolved = True


def apply_stream_records(client, table: str, records: list[dict], guarded: bool, pool=None, source_client=None,
                         source_table: str | None = None, only_over_unchanged: bool = False) -> ApplyResult:
    """Make `table` reflect `records` (DynamoDB Streams records in boto3's client form, oldest first).

    `guarded`: the backfill may still write, so every write goes through the write rule's
    conditions. Safe to retry: a partially applied batch applied again ends in the same state.
    A key the target rejects is returned in `rejected` and every other key is still applied; any
    other error raises.
    """
    changes = collapse(records)
    resolve_from_source(changes, source_client, source_table)
    result = ApplyResult(records=len(records))

    def write(change: KeyChange) -> Rejected | bool | str:
        try:
            if only_over_unchanged and change.before_known:
                if changed_since(client, table, change):
                    return "kept"
                return apply_over_unchanged(client, table, change.change(), change.before) or "kept"
            return apply_change(client, table, change.change(), guarded)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code not in ITEM_ERRORS:
                raise
            log.warning("target %s rejected the change of record %s: %s", table, change.first_sequence_number, code)
            return Rejected(change.first_sequence_number, change.key, code)

    outcomes = list(pool.map(write, changes)) if pool is not None and len(changes) > 1 else map(write, changes)
    for change, outcome in zip(changes, outcomes):
        if isinstance(outcome, Rejected):
            result.rejected.append(outcome)
        elif outcome == "kept":
            result.kept += 1
        elif not outcome:
            result.superseded += 1
        elif change.image is None:
            result.deletes += 1
        else:
            result.puts += 1
    log.info("applied %d stream records to %s: %d puts, %d deletes, %d superseded, %d kept, %d rejected",
             result.records, table, result.puts, result.deletes, result.superseded, result.kept, len(result.rejected))
    return result
