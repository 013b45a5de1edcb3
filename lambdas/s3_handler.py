"""Lambda handler: S3 events (through SQS) -> make each named target key match its source.

Environment: TARGET_BUCKET (required), PREFIX (the migration's; keys outside it are not its to
touch, and are skipped rather than failed: the route only sends keys under it anyway), TARGET_KMS_KEY
and OBJECT_LOCK (the migration's CopySettings, lambdas/s3_copy.py: what every copy carries),
ALL_VERSIONS ("true": the migration copies every version, so an event makes the key's target
history equal the source's, lambdas/s3_versions.sync_chain; else its current state,
lambdas/s3_apply.sync_key). Failures are reported per message (ReportBatchItemFailures), so one
failing key is retried alone and, after the queue's redrive limit, lands in the dead-letter queue
without holding back the others. Every LAG_RECORD_EVERY_SECONDS (per running instance) it leaves the
lag it measured on the queue, where `ferry status bucket` reads it (the same tag the poller writes:
ferry/s3/events.py).
"""

from __future__ import annotations

import logging
import os
import time

import boto3

from lambdas.s3_apply import apply_batch, sync_history, sync_key
from lambdas.s3_copy import PLAIN, CopySettings

log = logging.getLogger(__name__)

LAG_TAG = "ferry:lag"  # "SECONDS@EPOCH": ferry/s3/events.record_lag writes the same
LAG_RECORD_EVERY_SECONDS = 15.0
_recorded = {"at": 0.0}


def handle(event: dict, s3, target_bucket: str, prefix: str = "", settings: CopySettings = PLAIN,
           all_versions: bool = False, sqs=None) -> dict:
    """One batch of SQS messages, key by key (lambdas/s3_apply.apply_batch): a message whose keys
    all applied is done; the others are reported as failures, retried alone by SQS."""
    def apply_key(source_bucket: str, key: str, kinds: list[str]) -> None:
        if all_versions:
            sync_history(s3, source_bucket, target_bucket, key, kinds, settings)
            return
        for kind in kinds:
            sync_key(s3, source_bucket, target_bucket, key, kind=kind, settings=settings)

    messages = event.get("Records", [])
    applied = apply_batch([m["body"] for m in messages], apply_key, lambda bucket, key: key.startswith(prefix))
    if sqs is not None:
        record_lag(sqs, messages)
    return {"batchItemFailures": [{"itemIdentifier": m["messageId"]} for m, ok in zip(messages, applied) if not ok]}


def record_lag(sqs, records: list[dict]) -> None:
    """The batch's lag (from its oldest event's delivery to the queue until now) onto the queue,
    at most every LAG_RECORD_EVERY_SECONDS; a failure to record it fails nothing."""
    sent = [int(r["attributes"]["SentTimestamp"]) / 1000 for r in records if "SentTimestamp" in r.get("attributes", {})]
    if not sent or time.time() - _recorded["at"] < LAG_RECORD_EVERY_SECONDS:
        return
    _, _, _, _, account, name = records[0]["eventSourceARN"].split(":")
    try:
        url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.tag_queue(QueueUrl=url, Tags={LAG_TAG: f"{max(0.0, time.time() - min(sent)):.3f}@{time.time():.0f}"})
        _recorded["at"] = time.time()
    except Exception as error:  # the lag is for people watching; the events are applied either way
        log.warning("could not record the lag on %s: %s", name, type(error).__name__)


def handler(event, context):
    return handle(event, boto3.client("s3"), os.environ["TARGET_BUCKET"], os.environ.get("PREFIX", ""),
                  CopySettings.from_environment(os.environ), os.environ.get("ALL_VERSIONS") == "true",
                  boto3.client("sqs"))
