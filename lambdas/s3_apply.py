"""S3 live sync: make one target key match the source's current state.

An event is only a hint that a key may have changed: the key is decoded (S3 URL-encodes it in
notification events: `red flower.jpg` arrives as `red+flower.jpg`; EventBridge events carry it as it
is), then the source is read (HEAD) and the target made to match: copied (server-side) if different
in bytes, headers or metadata (lambdas/s3_compare.same_object), deleted if the source no longer has
it, its tags or ACL put if only those changed. Order, duplicates and missing sequencers therefore do
not matter. Nothing of the object's body is read.

Tags and ACLs are written as values read from the source, so a write could carry an older state
than another applier's (both read, the newer writes first): each such write is followed by a read of
the source, and written again if the source has changed since. Whatever the interleaving, the last
write of each applier carries a state read after its previous write, and a change after that has an
event of its own.

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

from lambdas.s3_compare import archived, same_tags, tag_counts_differ, tag_set
from lambdas.s3_copy import PLAIN, CopySettings, copy_object

log = logging.getLogger(__name__)

OBJECT, TAGS, ACL = "object", "tags", "acl"  # what an event says changed
REWRITES = 3  # a tag set or ACL written again this many times at most while the source keeps changing


def changes_in_message(body: str) -> list[tuple[str, str, str]]:
    """(bucket, key, kind) named by an S3 event, from a notification (direct, or through SNS) or
    from EventBridge; kind is OBJECT, TAGS or ACL. Test events name none."""
    event = json.loads(body)
    if "Message" in event and isinstance(event["Message"], str):  # delivered through SNS
        event = json.loads(event["Message"])
    if "detail" in event and "object" in event.get("detail", {}):  # delivered through EventBridge
        detail_type = event.get("detail-type", "")
        kind = TAGS if detail_type.startswith("Object Tags") else ACL if detail_type.startswith("Object ACL") else OBJECT
        return [(event["detail"]["bucket"]["name"], event["detail"]["object"]["key"], kind)]
    return [(r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"]), _kind(r.get("eventName", "")))
            for r in event.get("Records", []) if "s3" in r]


def _kind(event_name: str) -> str:
    return TAGS if event_name.startswith("ObjectTagging") else ACL if event_name.startswith("ObjectAcl") else OBJECT


def keys_in_message(body: str) -> list[tuple[str, str]]:
    """(bucket, key) pairs named by an S3 event (test events name none)."""
    return [(bucket, key) for bucket, key, _ in changes_in_message(body)]


def head(s3, bucket: str, key: str) -> dict | None:
    """The object's HEAD with its additional checksums, or None if it does not exist."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def sync_key(s3, source_bucket: str, target_bucket: str, key: str, multipart_threshold: int | None = None,
             keep_target_changes_since: float | None = None, kind: str = OBJECT,
             settings: CopySettings = PLAIN) -> str:
    """Make target/key match source/key now, by the one rule with the migration's `settings` (a
    target key, Object Lock), which its copy carries too. Returns 'copied', 'deleted', 'unchanged',
    'kept', 'tagged' (only its tags differed), 'acl' (only its ACL was written) or 'archived' (an
    archived source object, not restored, is left: lambdas/s3_compare.archived). Idempotent.

    `kind`: what the event says changed. A tagging event reads both tag sets (a tag change alone
    shows on no HEAD but the tag count); an ACL event compares and writes the ACL (copies do not
    carry ACLs: only these events do).

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
        if kind == ACL:
            return "acl" if sync_acl(s3, source_bucket, target_bucket, key) else "unchanged"
        if kind == TAGS or tag_counts_differ(source, target):
            return "tagged" if sync_tags(s3, source_bucket, target_bucket, key) else "unchanged"
        return "unchanged"
    if archived(source):  # cannot be read until restored: verification names it as archived
        return "archived"
    if keep_target_changes_since and target is not None and target["LastModified"] >= source["LastModified"]:
        return "kept"
    kwargs = {"multipart_threshold": multipart_threshold} if multipart_threshold else {}
    copy_object(s3, source_bucket, key, target_bucket, source["ContentLength"], etag=source["ETag"],
                storage_class=source.get("StorageClass"), settings=settings, **kwargs)
    if kind == ACL:  # a copy is private: the ACL event's grants go on the new copy
        sync_acl(s3, source_bucket, target_bucket, key)
    return "copied"


def read_tags(s3, bucket: str, key: str) -> dict[str, str] | None:
    """The object's tags, or None if it does not exist."""
    try:
        return tag_set(s3.get_object_tagging(Bucket=bucket, Key=key))
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def sync_tags(s3, source_bucket: str, target_bucket: str, key: str) -> bool:
    """Put the source's tags on the target object if they differ; read the source again after each
    write (see the module's docstring). Returns whether tags were written."""
    wanted, written = read_tags(s3, source_bucket, key), False
    for _ in range(REWRITES):
        current = read_tags(s3, target_bucket, key)
        if wanted is None or current is None or same_tags(wanted, current):  # gone meanwhile: its event follows
            return written
        if wanted:
            s3.put_object_tagging(Bucket=target_bucket, Key=key,
                                  Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in wanted.items()]})
        else:
            s3.delete_object_tagging(Bucket=target_bucket, Key=key)
        written, wanted = True, read_tags(s3, source_bucket, key)
    return written


GRANT_PARAMETERS = {"READ": "GrantRead", "WRITE": "GrantWrite", "READ_ACP": "GrantReadACP",
                    "WRITE_ACP": "GrantWriteACP", "FULL_CONTROL": "GrantFullControl"}


def _grantee(grantee: dict) -> str:
    """A grantee as a grant header names it: id="...", uri="..." or emailAddress="..."."""
    for field, name in (("ID", "id"), ("URI", "uri"), ("EmailAddress", "emailAddress")):
        if grantee.get(field):
            return f'{name}="{grantee[field]}"'
    return ""


def extra_grants(acl: dict) -> set[tuple[str, str]]:
    """An object ACL's grants other than its owner's own, as (permission, grantee): what the service
    granted others."""
    owner = _grantee({"ID": acl.get("Owner", {}).get("ID")})
    return {(g["Permission"], _grantee(g.get("Grantee", {}))) for g in acl.get("Grants", [])
            if _grantee(g.get("Grantee", {})) not in ("", owner)}


def sync_acl(s3, source_bucket: str, target_bucket: str, key: str) -> bool:
    """Grant on the target object what the source object grants others (the target's owner keeps
    full control; owners differ across accounts), by grant headers. A target bucket whose ACLs are
    disabled (Bucket owner enforced, S3's default since 2023) is left as it is. Read again after
    each write, as tags. Returns whether the ACL was written."""
    written = False
    for _ in range(REWRITES):
        try:
            source, target = (s3.get_object_acl(Bucket=source_bucket, Key=key),
                              s3.get_object_acl(Bucket=target_bucket, Key=key))
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return written  # gone meanwhile: its event follows
            raise
        wanted = extra_grants(source)
        if wanted == extra_grants(target):
            return written
        grants: dict[str, list[str]] = {"GrantFullControl": [_grantee({"ID": target["Owner"]["ID"]})]}
        for permission, grantee in sorted(wanted):
            grants.setdefault(GRANT_PARAMETERS[permission], []).append(grantee)
        try:
            s3.put_object_acl(Bucket=target_bucket, Key=key, **{name: ", ".join(who) for name, who in grants.items()})
        except ClientError as error:
            if error.response["Error"]["Code"] != "AccessControlListNotSupported":
                raise
            log.warning("object ACLs are disabled in %s: the ACL of %s is not copied", target_bucket, key)
            return written
        written = True
    return written
