"""S3 live sync: make one target key match the source's current state.

An event is only a hint that a key may have changed: the key is decoded (S3 URL-encodes it in
events: `red flower.jpg` arrives as `red+flower.jpg`), then the source is read (HEAD) and the target
made to match: copied (server-side) if different, deleted if the source no longer has it. Order,
duplicates and missing sequencers therefore do not matter. Nothing of the object's body is read.

The rule of every destructive step (this delete, `--delete`, a repair's delete): the source is read
just before the delete and again just after; a key the source has by then (created in between, its
copy perhaps made by another applier whose event is already consumed) is copied back. S3's own
conditional deletes cannot say "only if another bucket lacks this key", and the second read is
enough: whatever the interleaving, the last step taken for a key the source has is a copy.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from lambdas.s3_compare import archived
from lambdas.s3_copy import PLAIN, CopySettings, copy_object

log = logging.getLogger(__name__)


def keys_in_message(body: str) -> list[tuple[str, str]]:
    """(bucket, key) pairs named by an S3 event notification (test events name none)."""
    event = json.loads(body)
    if "Message" in event and isinstance(event["Message"], str):  # delivered through SNS
        event = json.loads(event["Message"])
    if "detail" in event and "object" in event.get("detail", {}):  # delivered through EventBridge
        return [(event["detail"]["bucket"]["name"], event["detail"]["object"]["key"])]
    return [(r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"])) for r in event.get("Records", [])
            if "s3" in r]


def head(s3, bucket: str, key: str) -> dict | None:
    """The object's HEAD with its additional checksums, or None if it does not exist."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def sync_key(s3, source_bucket: str, target_bucket: str, key: str, multipart_threshold: int | None = None,
             keep_target_changes_since: float | None = None, settings: CopySettings = PLAIN) -> str:
    """Make target/key match source/key now, by the one rule with the migration's `settings` (a
    target key, Object Lock), which its copy carries too. Returns 'copied', 'deleted', 'unchanged',
    'kept' or 'archived' (an archived source object, not restored, is left: lambdas/s3_compare.archived).
    Idempotent.

    `keep_target_changes_since` (a cutover's switch moment, epoch seconds): the service may already
    write to the target, so a target object written after the source's (or, for a key the source no
    longer has, after that moment) is the service's newer write and is kept; so is one written in
    the same second (S3 keeps LastModified to the second: the new home's write is preferred)."""
    source = head(s3, source_bucket, key)
    target = head(s3, target_bucket, key) if source is None and keep_target_changes_since else None
    if source is None:  # LastModified has whole seconds: a write in the switch's own second is kept
        if target is not None and target["LastModified"].timestamp() >= int(keep_target_changes_since):
            return "kept"
        s3.delete_object(Bucket=target_bucket, Key=key)
        source = head(s3, source_bucket, key)  # read again: created since the first read, it is copied back
        if source is None:
            return "deleted"
        target = None
    else:
        target = head(s3, target_bucket, key)
    if settings.same(source, target):
        return "unchanged"
    if archived(source):  # cannot be read until restored: verification names it as archived
        return "archived"
    if keep_target_changes_since and target is not None and target["LastModified"] >= source["LastModified"]:
        return "kept"
    kwargs = {"multipart_threshold": multipart_threshold} if multipart_threshold else {}
    copy_object(s3, source_bucket, key, target_bucket, source["ContentLength"], etag=source["ETag"],
                storage_class=source.get("StorageClass"), settings=settings, **kwargs)
    return "copied"
