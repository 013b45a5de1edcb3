"""Lambda handler: DynamoDB stream -> target table, through the shared apply function.

Configuration comes from the environment: TARGET_TABLE (required), TARGET_REGION (the target's
region; the function runs beside the source), TARGET_ENDPOINT_URL (optional), SOURCE_TABLE (to
re-read items when the stream has no new images) and, for a target in another account,
TARGET_ROLE_ARN (a role in the target account that the function assumes), and STATE_TABLE with
MIGRATION_ID: the state table (beside the target) where the function keeps its journal and its
progress while the migration runs (lambdas/journal.py), so the backfill and the catch-up gate, in
another process, can rely on what it wrote.

Partial failures are reported per record (ReportBatchItemFailures): the response names the first
record whose key the target rejected, so Lambda retries from there, bisects, and after its retry
limit sends that record's metadata to the on-failure destination (the dead-letter queue) and moves
on: a poison record never blocks its shard.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass

import boto3

from lambdas import journal
from lambdas.dynamo_apply import apply_stream_records, collapse


def from_lambda_json(value):
    """Lambda delivers binary attribute values base64-encoded; boto3's client wants bytes."""
    if isinstance(value, dict):
        out = {}
        for type_, inner in value.items():
            if type_ == "B":
                out[type_] = base64.b64decode(inner)
            elif type_ == "BS":
                out[type_] = [base64.b64decode(v) for v in inner]
            elif type_ == "M":
                out[type_] = {k: from_lambda_json(v) for k, v in inner.items()}
            elif type_ == "L":
                out[type_] = [from_lambda_json(v) for v in inner]
            else:
                out[type_] = inner
        return out
    return value


def decode_record(record: dict) -> dict:
    change = dict(record["dynamodb"])
    for image in ("Keys", "NewImage", "OldImage"):
        if image in change:
            change[image] = {name: from_lambda_json(av) for name, av in change[image].items()}
    return {**record, "dynamodb": change}


def target_client():
    """The target table's client: in TARGET_REGION (the target need not live beside the source), at
    TARGET_ENDPOINT_URL if one is set, as TARGET_ROLE_ARN (a role in the target's account) if set."""
    settings = {"region_name": os.environ.get("TARGET_REGION") or None,
                "endpoint_url": os.environ.get("TARGET_ENDPOINT_URL") or None}
    role_arn = os.environ.get("TARGET_ROLE_ARN")
    if not role_arn:
        return boto3.client("dynamodb", **settings)
    credentials = boto3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="ferry-live-sync")["Credentials"]
    return boto3.client(
        "dynamodb",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        **settings,
    )


@dataclass
class Journal:
    """Where this function reports to the migration (the state table, with the target's client)."""

    client: object
    table: str
    migration_id: str


def handle(event: dict, target, target_table: str, source=None, source_table: str | None = None,
           state: Journal | None = None) -> dict:
    """The handler's work, with its clients given: what the tests call with real stream records.

    While the migration's backfill may still write, every write is guarded (the write rule) and
    noted in the journal before it is sent; what was applied is recorded after it, in every phase
    (for the gates). Without a journal (a function deployed on its own), writes are plain."""
    records = [decode_record(r) for r in event.get("Records", [])]
    phase = journal.phase(state.client, state.table, state.migration_id) if state else None
    guarded = phase in journal.GUARDED_PHASES
    recording = state is not None and phase is not None
    changes = [(change.key, change.sequence_number) for change in collapse(records)]
    if guarded:
        state.client.put_item(TableName=state.table, Item={  # the target holds markers to clear (state.py)
            "migration": {"S": state.migration_id}, "part": {"S": "markers"},
            "updated_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}})
        journal.note(state.client, state.table, state.migration_id, changes)
    result = apply_stream_records(target, target_table, records, guarded=guarded, source_client=source,
                                  source_table=source_table)
    if recording:  # dealt with: written, refused as older, or rejected (retried, then dead-lettered)
        journal.applied(state.client, state.table, state.migration_id, changes)
        if records:
            created = min(float(r["dynamodb"].get("ApproximateCreationDateTime", time.time())) for r in records)
            journal.report_progress(state.client, state.table, state.migration_id, "lambda",
                                    time.time() - created, len(records))
    if not result.rejected:
        return {"batchItemFailures": []}
    first = min(result.rejected, key=lambda r: int(r.sequence_number))
    return {"batchItemFailures": [{"itemIdentifier": first.sequence_number}]}


def handler(event, context):
    source_table = os.environ.get("SOURCE_TABLE")
    target = target_client()
    state = (Journal(target, os.environ["STATE_TABLE"], os.environ["MIGRATION_ID"])
             if os.environ.get("STATE_TABLE") and os.environ.get("MIGRATION_ID") else None)
    return handle(event, target, os.environ["TARGET_TABLE"],
                  boto3.client("dynamodb") if source_table else None, source_table, state)
