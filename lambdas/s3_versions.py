"""Every version of a key, in order: the per-key history sync of `--all-versions`, which the bulk
sync (ferry/s3/versions.py), the poller and the Lambda (lambdas/s3_handler.py) all run.

A key's history, its *chain*, is its versions and delete markers, oldest first. The target's chain
must equal the source's: as many entries, in the same order, each delete marker a delete marker and
each version the same object as the source's version at that position, by the one rule
(lambdas/s3_compare.py: sizes, then MD5 ETags from the listings, else a HEAD of both versions
(VersionId) and their additional checksums or the source ETag recorded on the copy).

How a copied version is recognised: by its position and that rule, not by its version ID. S3 gives
every write a new ID, a delete marker carries no metadata, and reading metadata would take a HEAD
per version on every run, where the listing's sizes and ETags settle almost every pair with none.
So the version-ID map (source -> target) is the pairing of positions, and is what a report shows.

Sync of one key (plan_chain, then apply_plan): the longest beginning of the source's chain that can
be found, in order, among the target's entries is kept; every other target entry is deleted by its
VersionId and the rest of the source's chain appended in order: a version by a server-side copy of
that source version (CopySource VersionId), a delete marker by a DeleteObject without VersionId
(which is how S3 makes one). In the usual case (a first copy, a resumed one, new writes) the target
is a beginning of the source's chain and nothing is deleted: a kill at any moment leaves a beginning
(entries are added one at a time, in order), and a rerun appends what is still missing. Entries are
deleted only where the chains diverged: two appliers raced and both appended (a duplicate), a retried
request landed twice, or the source lost versions (a lifecycle rule expiring noncurrent versions, a
permanent delete): then only what does not fit is removed, not the whole history after it.

Why deleting target versions is safe: until a plan switches the service over, the target is Ferry's,
and nothing but Ferry writes to it; only versions Ferry listed and found out of place are deleted,
by their VersionId, so a version someone writes meanwhile is never touched by that delete; and, by
the rule of every destructive step (lambdas/s3_apply.py), both chains are read again after the
writes (sync_chain) and the work repeated until they are equal. After a switch, the target's new
versions are the service's: live sync then goes back to current state (lambdas/s3_apply.sync_key).

The order of versions and delete markers: ListObjectVersions returns both newest first, but boto3
hands them over as two lists, and LastModified (whole seconds; a multipart upload's is when it began)
cannot interleave them. Where a key has both and a delete marker is not the newest entry, one
request settles its place: the entries listed after it (VersionIdMarker) are the older ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from lambdas.s3_attributes import sync_acl
from lambdas.s3_compare import MAYBE_ARCHIVED_CLASSES, Listed, archived, same_by_listing
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE, PLAIN, CopySettings, copy_object

log = logging.getLogger(__name__)

MAX_ROUNDS = 4  # write, read again; more only while other appliers write the same key
GONE_VERSION = {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One version or delete marker of a key, as ListObjectVersions shows it."""

    key: str
    version_id: str
    marker: bool
    size: int = 0
    etag: str = ""
    storage_class: str = "STANDARD"

    @classmethod
    def version(cls, listed: dict) -> "Entry":
        return cls(listed["Key"], listed["VersionId"], False, listed["Size"], listed["ETag"].strip('"'),
                   listed.get("StorageClass", "STANDARD"))

    @classmethod
    def delete_marker(cls, listed: dict) -> "Entry":
        return cls(listed["Key"], listed["VersionId"], True)

    @property
    def listed(self) -> Listed:
        return Listed(self.key, self.size, self.etag, self.storage_class)


def next_page(page: dict) -> dict:
    """Where the ListObjectVersions request after a truncated `page` starts."""
    return {"KeyMarker": page["NextKeyMarker"],
            **({"VersionIdMarker": page["NextVersionIdMarker"]} if page.get("NextVersionIdMarker") else {})}


def listed_after(s3, bucket: str, key: str, version_id: str) -> set[str]:
    """The version IDs of `key` that ListObjectVersions lists after `version_id`: the older ones."""
    older: set[str] = set()
    base = {"Bucket": bucket, "Prefix": key}
    request = {**base, "KeyMarker": key, "VersionIdMarker": version_id}
    while True:
        page = s3.list_object_versions(**request)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        older |= {e["VersionId"] for e in entries if e["Key"] == key}
        if not page.get("IsTruncated") or any(e["Key"] > key for e in entries):
            return older
        request = {**base, **next_page(page)}


def order_chain(s3, bucket: str, key: str, versions: list[dict], markers: list[dict]) -> list[Entry]:
    """A key's chain, oldest first, from its versions and delete markers as listed (each newest first)."""
    if not markers or not versions:
        return [Entry.version(v) if "Size" in v else Entry.delete_marker(v) for v in reversed(versions or markers)]
    newest_first: list[Entry] = []
    placed = 0  # versions placed so far
    for marker in markers:
        if marker.get("IsLatest"):
            newer = 0
        else:
            older = listed_after(s3, bucket, key, marker["VersionId"])
            newer = sum(1 for v in versions if v["VersionId"] not in older)
        while placed < newer:
            newest_first.append(Entry.version(versions[placed]))
            placed += 1
        newest_first.append(Entry.delete_marker(marker))
    newest_first += [Entry.version(v) for v in versions[placed:]]
    return newest_first[::-1]


def key_chain(s3, bucket: str, key: str) -> list[Entry]:
    """One key's chain, oldest first (a few requests: its versions are listed under the key as prefix)."""
    versions: list[dict] = []
    markers: list[dict] = []
    base = request = {"Bucket": bucket, "Prefix": key}
    while True:
        page = s3.list_object_versions(**request)
        versions += [v for v in page.get("Versions", []) if v["Key"] == key]
        markers += [m for m in page.get("DeleteMarkers", []) if m["Key"] == key]
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if not page.get("IsTruncated") or any(e["Key"] > key for e in entries):
            return order_chain(s3, bucket, key, versions, markers)
        request = {**base, **next_page(page)}


def head_version(s3, bucket: str, entry: Entry) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=entry.key, VersionId=entry.version_id, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in GONE_VERSION:
            return None
        raise


def judge(s3_source, s3_target, source_bucket: str, target_bucket: str,
          deep: bool = False, settings: CopySettings = PLAIN) -> Callable[[Entry, Entry], bool]:
    """The one rule for a source entry and a target entry, with the migration's `settings`:
    markers match markers; versions are the same object by their listings, else by HEADs of both
    versions (`deep`, or a target key or lock, which no listing shows: always by HEADs)."""

    def same(source: Entry, target: Entry) -> bool:
        if source.marker or target.marker:
            return source.marker == target.marker
        verdict = same_by_listing(source.listed, target.listed, deep or settings.decided_by_heads)
        if verdict is not None:
            return verdict
        found = head_version(s3_source, source_bucket, source)
        return found is not None and settings.same(found, head_version(s3_target, target_bucket, target))

    return same


@dataclass
class ChainPlan:
    """What makes a target chain equal its source's: (source, target) pairs kept in place (the
    version-ID map), target entries to delete, and source entries to append, in order."""

    kept: list[tuple[Entry, Entry]] = field(default_factory=list)
    remove: list[Entry] = field(default_factory=list)
    append: list[Entry] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.remove or self.append)


def plan_chain(source: list[Entry], target: list[Entry], same: Callable[[Entry, Entry], bool]) -> ChainPlan:
    """Keep the longest beginning of `source` found in order in `target` (each entry at the first
    place after the previous one where the rule finds it), remove the target's other entries,
    append the rest. A target that is a beginning of the source is kept whole, with one comparison
    per entry; a different size rules a pair out without a request."""
    plan = ChainPlan()
    at = 0
    for entry in source:
        found = next((i for i in range(at, len(target)) if same(entry, target[i])), None)
        if found is None:
            break
        plan.remove += target[at:found]
        plan.kept.append((entry, target[found]))
        at = found + 1
    plan.remove += target[at:]
    plan.append = source[len(plan.kept):]
    return plan


@dataclass
class Applied:
    """What apply_plan wrote for one key."""

    versions: int = 0
    markers: int = 0
    removed: int = 0
    bytes: int = 0
    archived: Entry | None = None  # the source version the appending stopped at (archived, not restored)
    gone: bool = False  # a source version vanished since the listing: the key must be listed again


def foreign(plan: ChainPlan, source: list[Entry], target: list[Entry], same_content: Callable[[Entry, Entry], bool]
            ) -> list[Entry]:
    """The target versions the plan would delete that may be the only copy of their content, so
    are never deleted: newer than the last entry found to be a copy of the source's, with content no
    source version has (the service's own write after a switch, or a version the source deleted for
    good after it was copied). Older history (a version a lifecycle rule expired from the source), a
    duplicate copy (two appliers raced), a copy under another target key or lock (compared by
    content only), and delete markers (no content; an undelete removes the source's) are Ferry's to
    delete. A key with no source history is deleted only where the caller says (`--delete`, or live
    sync of a key whose every version the source deleted)."""
    if not source:
        return []
    last_kept = max((target.index(copy) for _, copy in plan.kept), default=-1)
    return [entry for entry in plan.remove if not entry.marker and target.index(entry) > last_kept
            and not any(not candidate.marker and same_content(candidate, entry) for candidate in source)]


def apply_plan(s3, source_bucket: str, target_bucket: str, key: str, plan: ChainPlan,
               multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
               settings: CopySettings = PLAIN) -> Applied:
    """Delete the target entries out of place (by VersionId), then append the missing source entries
    in order. Stops at a source version that is archived (nothing after it can follow in order) or
    no longer exists (the source changed: the caller lists the key again)."""
    done = Applied()
    for entry in plan.remove:
        s3.delete_object(Bucket=target_bucket, Key=key, VersionId=entry.version_id)
        done.removed += 1
    for entry in plan.append:
        if entry.marker:
            s3.delete_object(Bucket=target_bucket, Key=key)  # on a versioned bucket: a new delete marker
            done.markers += 1
            continue
        if entry.storage_class in MAYBE_ARCHIVED_CLASSES:  # a HEAD decides (Intelligent-Tiering hides its tier)
            found = head_version(s3, source_bucket, entry)
            if found is not None and archived(found):
                done.archived = entry
                return done
        try:
            copy_object(s3, source_bucket, key, target_bucket, entry.size, multipart_threshold, part_size,
                        entry.etag, entry.storage_class, settings=settings, version_id=entry.version_id)
        except ClientError as error:
            if error.response["Error"]["Code"] not in GONE_VERSION:
                raise
            done.gone = True
            return done
        done.versions += 1
        done.bytes += entry.size
    return done


@dataclass
class KeySync:
    """One key's history made equal: what was written, and the final version-ID map."""

    key: str
    status: str  # 'unchanged', 'synced', 'archived' (stopped at an archived source version) or 'diverged'
    # (the target holds entries Ferry did not write: left as they are, nothing appended after them)
    versions: int = 0
    markers: int = 0
    removed: int = 0
    bytes: int = 0
    kept: list[tuple[Entry, Entry]] = field(default_factory=list)

    @property
    def current(self) -> tuple[str, str] | None:
        """The (source, target) version IDs of the key's current version, where both chains end with
        a version, not a delete marker: what its tags and grants are read and written for."""
        if not self.kept or self.kept[-1][0].marker:
            return None
        return self.kept[-1][0].version_id, self.kept[-1][1].version_id


def sync_chain(s3, source_bucket: str, target_bucket: str, key: str, multipart_threshold: int | None = None,
               part_size: int | None = None, s3_source=None,
               known: tuple[list[Entry], list[Entry]] | None = None, settings: CopySettings = PLAIN) -> KeySync:
    """Make the target's chain of `key` equal the source's now. Idempotent, in any order, as often as
    events come: both chains are read, the difference written, both read again, until equal.
    `s3_source`: a client for reading the source (default `s3`, which a copy needs to read it anyway);
    `known`: both chains as just listed (the bulk sync's), used for the first round. Where copies
    carry grants (`settings.acls`), a copied history's current version gets its source's (older
    versions' ACLs are not copied: histories are copied as content)."""
    s3_source = s3_source or s3
    same = judge(s3_source, s3, source_bucket, target_bucket, settings=settings)
    same_content = judge(s3_source, s3, source_bucket, target_bucket)  # without the key or lock: content alone
    result = KeySync(key, "unchanged")
    for _ in range(MAX_ROUNDS):
        source, target = known or (key_chain(s3_source, source_bucket, key), key_chain(s3, target_bucket, key))
        known = None
        plan = plan_chain(source, target, same)
        result.kept = plan.kept
        if plan.equal:
            if result.status == "synced" and settings.acls and result.current:
                sync_acl(s3, source_bucket, target_bucket, key, versions=result.current)  # copies are private
            return result
        if others := foreign(plan, source, target, same_content):
            log.warning("key %s: the target holds %d entries Ferry did not write (first: version %s): its history is "
                        "left as it is", key, len(others), others[0].version_id)
            result.status = "diverged"
            return result
        applied = apply_plan(s3, source_bucket, target_bucket, key, plan, multipart_threshold or MULTIPART_THRESHOLD,
                             part_size or PART_SIZE, settings)
        result.status = "synced"
        result.versions += applied.versions
        result.markers += applied.markers
        result.removed += applied.removed
        result.bytes += applied.bytes
        if applied.archived:
            log.info("key %s: version %s is archived, not restored: its history stops before it", key,
                     applied.archived.version_id)
            result.status = "archived"
            return result
    raise RuntimeError(f"the history of key {key!r} in {target_bucket} still differs after {MAX_ROUNDS} rounds "
                       "(others write it meanwhile): retried")
