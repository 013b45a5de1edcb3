"""Apply DynamoDB stream records to a target table.

The same function runs in the deployed Lambda, in Ferry's local poller and in the flow's catch-up
step. Guarantees:
- per-key order: only the last record of each key in a batch matters, because every record carries
  the item's whole new image (or is a delete), so the batch collapses to one write per key;
- idempotent: puts of whole images and deletes by key, so applying a record twice changes nothing;
- nothing of the item's contents is logged, only counts.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

from lambdas.batch_write import write_all

log = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    records: int = 0
    puts: int = 0
    deletes: int = 0


def key_identity(keys: dict) -> str:
    """A string that is equal for two records exactly when they name the same primary key."""

    def encode(value):
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        return value

    return json.dumps(encode(keys), sort_keys=True)


def collapse_to_writes(records: list[dict]) -> list[dict]:
    """Turn stream records, oldest first, into one write request per key (its last change)."""
    last_write: dict[str, dict] = {}
    for record in records:
        change = record["dynamodb"]
        identity = key_identity(change["Keys"])
        last_write.pop(identity, None)  # keep insertion order = order of each key's last change
        if record["eventName"] == "REMOVE":
            last_write[identity] = {"DeleteRequest": {"Key": change["Keys"]}}
        else:
            last_write[identity] = {"PutRequest": {"Item": change["NewImage"]}}
    return list(last_write.values())


def apply_stream_records(client, table: str, records: list[dict], pool=None) -> ApplyResult:
    """Make `table` reflect `records` (DynamoDB Streams records in boto3's client form, oldest first).

    Safe to retry: a partially applied batch applied again ends in the same state.
    """
    writes = collapse_to_writes(records)
    write_all(client, table, writes, pool=pool)
    result = ApplyResult(records=len(records))
    for write in writes:
        if "PutRequest" in write:
            result.puts += 1
        else:
            result.deletes += 1
    log.info("applied %d stream records to %s: %d puts, %d deletes", result.records, table, result.puts, result.deletes)
    return result
