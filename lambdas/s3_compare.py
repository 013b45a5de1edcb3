"""Whether a target object is the same as its source: the one rule the bulk sync, the verification,
the repair and the live-sync handler all use (rclone's lesson: one place decides).

The rule, cheapest evidence first:
1. Absent on the target, or a different size: different.
2. From the two listings alone, no request: equal ETags that are both an MD5 of the content (no
   multipart '-N' suffix) are the same. This settles almost every unchanged object.
3. Otherwise (multipart ETags, or MD5-looking ETags that differ, as SSE-KMS objects' do for equal
   bytes) both sides are HEADed (ChecksumMode=ENABLED) and the strongest evidence both have decides:
   a. a full-object additional checksum both have (CRC64NVME, SHA256, SHA1, CRC32C, CRC32; composite,
      per-part ones are ignored: they depend on how the object was cut into parts);
   b. else ETags that are both real MD5s of the content (single-part, not KMS- or customer-key
      encrypted);
   c. else the source ETag Ferry recorded on the target when it copied it (`ferry-source-etag`,
      set on multipart copies, whose own ETag differs from the source's);
   d. else nothing proves them equal: different, so the object is copied again (never lost).
4. Same bytes are the same object only with the same headers (Content-Type, -Encoding,
   -Disposition, -Language, Cache-Control, Expires, the website redirect) and the same user metadata
   (Ferry's own `ferry-source-etag` aside): a metadata-only change (CopyObject with REPLACE) keeps the
   ETag but is a change. Both HEADs carry them, so this costs no request.
5. Tags (same_tags): the HEADs' tag counts decide when they differ or are both zero; where a change
   may be only a tag change with as many tags (live sync of a tagging event, and `--deep`), both
   tag sets are read.
6. With a target KMS key (`target_kms_key_arn`), a target object not encrypted with that key (its
   HEAD's SSEKMSKeyId, an ARN) is different whatever its bytes: a run with the key re-encrypts older
   copies. Without one, encryption is not compared (SSE-KMS copies compare equal by step 3c).
7. With `object_lock` (the source bucket has Object Lock), the lock is part of the object: a target
   lacking the source's retention still in force (mode and retain-until date) or with another legal
   hold is different. A target retention where the source has none in force is accepted: it comes
   from the target bucket's default retention, which no copy can leave out.
8. Where copies carry grants (both buckets' ACLs enabled: lambdas/s3_copy.CopySettings.acls), what
   each object grants groups (everyone, authenticated users, log delivery:
   lambdas/s3_attributes.extra_grants) is part of it. Only `--deep` reads ACLs (two requests per
   object): live sync applies each ACL event, and `--deep` finds what no event carried (a copy
   killed before its grants were written).
`deep` skips step 2: every same-size pair is decided by steps 3-8, so additional checksums, headers,
metadata and tags are read for all objects. Neither the encryption key nor the lock shows in a
listing, so with either of steps 6 and 7 in force callers skip step 2 too
(lambdas/s3_copy.CopySettings.decided_by_heads): step 2 can only say "same", and that it can no
longer prove. Timestamps are never used: a copy is always newer than its source. Between the listing
steps (1-2, no request) and HEADs, a bulk sync without `--deep` sees a metadata-only change only
through its event (live sync); `--deep` sees every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

RECORDED_ETAG = "ferry-source-etag"
FERRY_METADATA = {RECORDED_ETAG}  # user metadata entries Ferry writes on copies, not the service's
HEADERS = ["ContentType", "ContentEncoding", "ContentDisposition", "CacheControl", "ContentLanguage", "Expires",
           "WebsiteRedirectLocation"]
ARCHIVED_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}  # unreadable, so uncopyable, until restored (GLACIER_IR is not)
ARCHIVE_TIERS = {"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"}  # Intelligent-Tiering's, in a HEAD's ArchiveStatus
# What a listing shows of an object that may be archived: INTELLIGENT_TIERING hides its tier, so a HEAD decides
MAYBE_ARCHIVED_CLASSES = ARCHIVED_CLASSES | {"INTELLIGENT_TIERING"}
CHECKSUMS = ["ChecksumCRC64NVME", "ChecksumSHA256", "ChecksumSHA1", "ChecksumCRC32C", "ChecksumCRC32"]
ENCRYPTED_ETAGS = {"aws:kms", "aws:kms:dsse"}  # their ETags are not an MD5 of the content


@dataclass(frozen=True, slots=True)
class Listed:
    """One object as a listing shows it: all that steps 1 and 2 of the rule, and a copy, need."""

    key: str
    size: int
    etag: str  # without the quotes S3 puts around it
    storage_class: str = "STANDARD"

    @classmethod
    def from_listing(cls, entry: dict) -> "Listed":
        """From a ListObjectsV2 `Contents` entry."""
        return cls(entry["Key"], entry["Size"], entry["ETag"].strip('"'), entry.get("StorageClass", "STANDARD"))

    @classmethod
    def from_head(cls, key: str, head: dict) -> "Listed":
        """From a HeadObject response."""
        return cls(key, head["ContentLength"], head["ETag"].strip('"'), head.get("StorageClass", "STANDARD"))


def archived(head: dict) -> bool:
    """Whether an object (its HEAD) is archived and not restored: it cannot be copied now. GLACIER and
    DEEP_ARCHIVE objects, and INTELLIGENT_TIERING ones in an archive tier (ArchiveStatus
    ARCHIVE_ACCESS or DEEP_ARCHIVE_ACCESS), until a restore has finished. The bulk sync, live sync
    and verification report such objects as archived instead of copying them."""
    storage = head.get("StorageClass")
    in_archive = storage in ARCHIVED_CLASSES or (storage == "INTELLIGENT_TIERING"
                                                 and head.get("ArchiveStatus") in ARCHIVE_TIERS)
    return in_archive and 'ongoing-request="false"' not in head.get("Restore", "")


def is_md5_etag(etag: str) -> bool:
    """A multipart ETag ('...-N') is not an MD5 of the content and cannot be compared across uploads."""
    return "-" not in etag


def same_by_listing(source: Listed, target: Listed | None, deep: bool = False) -> bool | None:
    """Steps 1 and 2: True or False when the listings decide, None when both sides must be HEADed."""
    if target is None or source.size != target.size:
        return False
    if not deep and source.etag == target.etag and is_md5_etag(source.etag):
        return True
    return None


def full_object_checksums(head: dict) -> dict[str, str]:
    """The additional checksums of a HEAD response that cover the whole object."""
    if head.get("ChecksumType") == "COMPOSITE":
        return {}
    return {name: head[name] for name in CHECKSUMS if head.get(name) and "-" not in head[name]}


def content_md5(head: dict) -> bool:
    """Whether the HEAD's ETag is an MD5 of the object's bytes."""
    return (is_md5_etag(head["ETag"]) and head.get("ServerSideEncryption") not in ENCRYPTED_ETAGS
            and not head.get("SSECustomerAlgorithm"))


def service_metadata(head: dict) -> dict[str, str]:
    """The object's user metadata without the entries Ferry adds to its copies."""
    return {name: value for name, value in head.get("Metadata", {}).items() if name not in FERRY_METADATA}


def same_headers(source: dict, target: dict) -> bool:
    """Step 4: the headers and user metadata the service set are the same on both HEADs."""
    return (all(source.get(name) == target.get(name) for name in HEADERS)
            and service_metadata(source) == service_metadata(target))


def retention_in_force(head: dict, now: datetime | None = None) -> tuple[str, datetime] | None:
    """An object's Object Lock retention (mode, retain-until date) while it still holds, else None:
    an expired retention protects nothing, and S3 refuses to set one in the past."""
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    if not mode or not until or until <= (now or datetime.now(timezone.utc)):
        return None
    return mode, until


def legal_hold(head: dict) -> bool:
    return head.get("ObjectLockLegalHoldStatus") == "ON"


def same_lock(source: dict, target: dict) -> bool:
    """Step 7: the target holds the source's retention in force (any, where the source has none) and
    its legal hold."""
    wanted = retention_in_force(source)
    if wanted and (target.get("ObjectLockMode"), target.get("ObjectLockRetainUntilDate")) != wanted:
        return False
    return legal_hold(source) == legal_hold(target)


def same_object(source: dict, target: dict | None, target_kms_key_arn: str | None = None,
                object_lock: bool = False) -> bool:
    """Steps 3, 4, 6 and 7, for the HEAD responses of a source object and its target (None: absent)."""
    if target is None or source["ContentLength"] != target["ContentLength"]:
        return False
    if target_kms_key_arn and target.get("SSEKMSKeyId") != target_kms_key_arn:
        return False
    if object_lock and not same_lock(source, target):
        return False
    return same_bytes(source, target) and same_headers(source, target)


def same_bytes(source: dict, target: dict) -> bool:
    """Step 3: the strongest evidence both HEADs have that the bytes are the same."""
    source_sums, target_sums = full_object_checksums(source), full_object_checksums(target)
    shared = [name for name in CHECKSUMS if name in source_sums and name in target_sums]
    if shared:
        return source_sums[shared[0]] == target_sums[shared[0]]
    source_etag = source["ETag"].strip('"')
    if content_md5(source) and content_md5(target):
        return source_etag == target["ETag"].strip('"')
    return target.get("Metadata", {}).get(RECORDED_ETAG) == source_etag


def tag_set(tagging: dict) -> dict[str, str]:
    """A GetObjectTagging answer as {key: value}."""
    return {tag["Key"]: tag["Value"] for tag in tagging.get("TagSet", [])}


def tag_counts_differ(source: dict, target: dict) -> bool:
    """Whether the two HEADs' tag counts (absent: none) already say the tag sets differ."""
    return source.get("TagCount", 0) != target.get("TagCount", 0)


def tags_undecided(source: dict, target: dict) -> bool:
    """Whether the two HEADs' tag counts leave the tag sets to be read: both have tags, as many. (A
    HEAD without TagCount has none, as GetObject's.)"""
    return source.get("TagCount", 0) == target.get("TagCount", 0) != 0


def same_tags(source_tags: dict[str, str], target_tags: dict[str, str]) -> bool:
    """Step 5: the same tags, keys and values."""
    return source_tags == target_tags
