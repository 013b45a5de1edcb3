"""Whether two objects are the same, from their HEAD responses: the rule the bulk sync, the verify and
the live-sync handler all use (rclone's lesson: one place decides).

Different sizes: different. Same size, the strongest evidence both sides have:
  a. a full-object additional checksum both have (CRC64NVME, SHA256, SHA1, CRC32C, CRC32) decides;
  b. else ETags that are both real MD5s of the content (single-part, not KMS- or customer-key
     encrypted) decide;
  c. else the source ETag Ferry recorded on the target when it copied it (`ferry-source-etag`, set
     on multipart copies, whose own ETag differs from the source's);
  d. else nothing proves them equal: different, so the object is copied again (never lost).
Timestamps are never used: a copy is always newer than its source. HEAD with ChecksumMode=ENABLED,
or the additional checksums are not returned.
"""

from __future__ import annotations

RECORDED_ETAG = "ferry-source-etag"
CHECKSUMS = ["ChecksumCRC64NVME", "ChecksumSHA256", "ChecksumSHA1", "ChecksumCRC32C", "ChecksumCRC32"]
ENCRYPTED_ETAGS = {"aws:kms", "aws:kms:dsse"}  # their ETags are not an MD5 of the content


def comparable(etag: str) -> bool:
    """A multipart ETag ('...-N') is not an MD5 of the content and cannot be compared across uploads."""
    return "-" not in etag


def full_object_checksums(head: dict) -> dict[str, str]:
    """The additional checksums that cover the whole object. Composite ones ('...-N') do not: they
    depend on how the object was cut into parts."""
    if head.get("ChecksumType") == "COMPOSITE":
        return {}
    return {name: head[name] for name in CHECKSUMS if head.get(name) and "-" not in head[name]}


def md5_etag(head: dict) -> bool:
    return (comparable(head["ETag"]) and head.get("ServerSideEncryption") not in ENCRYPTED_ETAGS
            and not head.get("SSECustomerAlgorithm"))


def same_object(source: dict, target: dict | None) -> bool:
    """The rule above, for the HEAD responses of a source object and its target (None: absent)."""
    if target is None or source["ContentLength"] != target["ContentLength"]:
        return False
    source_sums, target_sums = full_object_checksums(source), full_object_checksums(target)
    shared = [name for name in CHECKSUMS if name in source_sums and name in target_sums]
    if shared:
        return source_sums[shared[0]] == target_sums[shared[0]]
    source_etag = source["ETag"].strip('"')
    if md5_etag(source) and md5_etag(target):
        return source_etag == target["ETag"].strip('"')
    return target.get("Metadata", {}).get(RECORDED_ETAG) == source_etag
