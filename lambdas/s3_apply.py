"""S3 live sync: make one target key match the source's current state.

An event is only a hint that a key may have changed: the key is decoded (S3 URL-encodes it in
notification events: `red flower.jpg` arrives as `red+flower.jpg`; EventBridge events carry it as it
is), then the source is read (HEAD) and the target made to match: copied (server-side) if different
in bytes, headers or metadata (lambdas/s3_compare.same_object), deleted if the source no longer has
it, its tags or ACL put if only those changed. Order, duplicates and missing sequencers therefore do
not matter. Nothing of the object's body is read.

Tags and ACLs are written as values read from the source (lambdas/s3_attributes.py), each write
followed by another read of the source.

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

from lambdas.s3_attributes import REWRITES, SourceKeepsChanging, read_tags, sync_acl, sync_tags  # noqa: F401
from lambdas.s3_compare import archived, same_headers, tag_counts_differ, tags_undecided
from lambdas.s3_copy import PLAIN, CopySettings, copy_object
from lambdas.s3_versions import sync_chain

log = logging.getLogger(__name__)

OBJECT, TAGS, ACL = "object", "tags", "acl"  # what an event says changed


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


APPLY_THREADS = 8  # keys of one batch of messages applied at once


def apply_batch(bodies: list[str], apply_key, wanted=lambda bucket, key: True,
                threads: int = APPLY_THREADS) -> list[bool]:
    """A batch of event messages applied key by key: each key once, however many messages name it
    (S3 sends a put and its tags as two events; writes come in bursts), with all they say changed
    (`apply_key(bucket, key, kinds)`: OBJECT or TAGS, which covers it, then ACL; or ACL alone, which
    covers the object too), keys in parallel. Returns, per message, whether every key it names (that
    `wanted(bucket, key)`) was applied; a message that cannot be read fails alone."""
    from concurrent.futures import ThreadPoolExecutor

    named: list[list[tuple[str, str]] | None] = []
    kinds: dict[tuple[str, str], set[str]] = {}
    for body in bodies:
        try:
            changes = [(b, k, kind) for b, k, kind in changes_in_message(body) if wanted(b, k)]
        except Exception:  # not an S3 event as Ferry knows them: this message fails alone
            named.append(None)
            continue
        named.append([(b, k) for b, k, _ in changes])
        for bucket, key, kind in changes:
            kinds.setdefault((bucket, key), set()).add(kind)

    def run(bucket_key: tuple[str, str]) -> bool:
        said = kinds[bucket_key]
        ordered = [ACL] if said == {ACL} else [TAGS if TAGS in said else OBJECT] + ([ACL] if ACL in said else [])
        try:
            apply_key(*bucket_key, ordered)
            return True
        except Exception as error:  # its messages stay on the queue: retried, then dead-lettered
            log.warning("applying the events of key %s failed: %s", bucket_key[1], type(error).__name__)
            return False

    keys = list(kinds)
    with ThreadPoolExecutor(max(1, min(threads, len(keys)))) as pool:
        applied = dict(zip(keys, pool.map(run, keys)))
    return [names is not None and all(applied[name] for name in names) for names in named]


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
        if tag_counts_differ(source, target) or (kind == TAGS and tags_undecided(source, target)):
            return "tagged" if sync_tags(s3, source_bucket, target_bucket, key) else "unchanged"
        return "unchanged"
    if archived(source):  # cannot be read until restored: verification names it as archived
        return "archived"
    if keep_target_changes_since and target is not None and target["LastModified"] >= source["LastModified"]:
        return "kept"
    kwargs = {"multipart_threshold": multipart_threshold} if multipart_threshold else {}
    for _ in range(REWRITES):
        copy_object(s3, source_bucket, key, target_bucket, source["ContentLength"], etag=source["ETag"],
                    storage_class=source.get("StorageClass"), settings=settings, **kwargs)
        if keep_target_changes_since:  # a switch window: another copy could overwrite the service's newer write
            break
        # The copy is pinned to the ETag, not to the headers and metadata (a metadata-only change keeps
        # it): read the source again, and copy again if they changed meanwhile (another applier's write
        # may have landed before this one, its event consumed). New bytes, or none, have events of their own.
        after = head(s3, source_bucket, key)
        if after is None or after["ETag"] != source["ETag"] or same_headers(after, source):
            break
        source = after
    else:
        raise SourceKeepsChanging(f"the metadata of {key} changed on every read while it was copied: retried")
    if kind == ACL and not settings.acls:  # a copy is private: the ACL event's grants go on the new copy
        sync_acl(s3, source_bucket, target_bucket, key)
    return "copied"


def sync_history(s3, source_bucket: str, target_bucket: str, key: str, kinds: list[str], settings: CopySettings,
                 multipart_threshold: int | None = None, part_size: int | None = None) -> str:
    """An event where histories are copied: the key's history made equal (lambdas/s3_versions.sync_chain,
    which compares content only), then, for a tagging or ACL event, the current version's tags or
    grants made the source's, where the history is Ferry's (not diverged, not stopped at an
    archived version), pinned to the versions both chains end with. Returns sync_chain's status."""
    synced = sync_chain(s3, source_bucket, target_bucket, key, multipart_threshold, part_size, settings=settings)
    if synced.status in ("synced", "unchanged") and synced.current:
        if TAGS in kinds:
            sync_tags(s3, source_bucket, target_bucket, key, versions=synced.current)
        if ACL in kinds:
            sync_acl(s3, source_bucket, target_bucket, key, versions=synced.current)
    return synced.status
