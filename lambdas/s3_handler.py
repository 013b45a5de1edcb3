"""Lambda handler: S3 events (through SQS) -> make each named target key match its source.

Environment: TARGET_BUCKET (required), PREFIX (the migration's; keys outside it are not its to
touch, and are skipped rather than failed: the route only sends keys under it anyway), ALL_VERSIONS
("true": the migration copies every version, so an event makes the key's target history equal the
source's, lambdas/s3_versions.sync_chain; else its current state, lambdas/s3_apply.sync_key). Failures are reported per message (ReportBatchItemFailures),
so one failing key is retried alone and, after the queue's redrive limit, lands in the dead-letter
queue without holding back the others.
"""

from __future__ import annotations

import logging
import os

import boto3

from lambdas.s3_apply import keys_in_message, sync_key
from lambdas.s3_versions import sync_chain

log = logging.getLogger(__name__)


def handle(event: dict, s3, target_bucket: str, prefix: str = "", all_versions: bool = False) -> dict:
    failures = []
    for message in event.get("Records", []):
        try:
            for source_bucket, key in keys_in_message(message["body"]):
                if key.startswith(prefix):
                    (sync_chain if all_versions else sync_key)(s3, source_bucket, target_bucket, key)
        except Exception as error:  # reported, retried by SQS, then dead-lettered
            log.warning("message %s failed: %s", message.get("messageId"), type(error).__name__)
            failures.append({"itemIdentifier": message["messageId"]})
    return {"batchItemFailures": failures}


def handler(event, context):
    return handle(event, boto3.client("s3"), os.environ["TARGET_BUCKET"], os.environ.get("PREFIX", ""),
                  os.environ.get("ALL_VERSIONS") == "true")
