"""Server-side copies that keep everything: bytes never pass through Ferry.

Small objects: one CopyObject with MetadataDirective and TaggingDirective COPY (S3 carries over
Content-Type, Content-Encoding, Content-Disposition, Cache-Control, Content-Language, Expires, user
metadata and tags) and the source's storage class. Objects above the multipart threshold (CopyObject
stops at 5 GiB): a multipart upload created with all those headers, metadata and tags passed
explicitly (boto3's managed copy() drops them on this path), parts copied in parallel with
UploadPartCopy, every part pinned to the ETag read at the start (CopySourceIfMatch) so an object
that changes mid-copy fails the copy instead of mixing versions; the caller retries it. A multipart
copy also carries `ferry-source-etag` in its user metadata: its own ETag differs from the source's,
and this is what lets a later comparison see that the bytes are the same. So does a single copy of
an object whose ETags are not MD5s (uploaded in parts, SSE-KMS, SSE-C): see record_source_etag.

What every write into the target carries beyond the object is one CopySettings, decided once per
migration (ferry/s3/preflight.copy_settings) and passed down to each copy, the Lambda's included:
- a target KMS key: every write (CopyObject, CreateMultipartUpload) re-encrypts with it
  (ServerSideEncryption aws:kms, SSEKMSKeyId), so a key the target bucket's default does not name
  still covers every copy;
- Object Lock (the source bucket has it, so the target must: preflight refuses otherwise): every
  write carries the object's retention in force (ObjectLockMode, ObjectLockRetainUntilDate) and its
  legal hold, read from the source's HEAD; S3 does not copy them by itself.
With either, a small object is copied from its HEAD (copy_described): one HEAD and one CopyObject
that passes the headers and metadata itself and records the source ETag in the same request, instead
of a CopyObject then a metadata-only copy of the copy onto itself (record_source_etag): a target
under Object Lock is versioned, and that second write would keep a second locked version.

Object Lock buckets are versioned, so a copy over an existing key adds a version: that is allowed
even when the current version is under COMPLIANCE retention (or GOVERNANCE: Ferry never asks to
bypass it), which only forbids deleting or shortening that version. So a target whose lock differs
from its source's is fixed by a new copy carrying the source's settings (rule step 7), whatever the
old version's retention; the old version stays, as S3 requires, until its retain-until date. For the
same reason Ferry's deletes in such a bucket (`--delete`, live sync) only add delete markers.

With a `version_id`, that version of the key is copied (`--all-versions`, lambdas/s3_versions.py):
the copy source names it, so no pinning is needed (a version never changes), and, the target being
versioned, every write is a version of its own: the source ETag is then recorded by the copy itself
(a metadata-replacing CopyObject from the source version), never by a second copy onto itself.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from lambdas.s3_attributes import sync_acl, sync_tags
from lambdas.s3_compare import (ENCRYPTED_ETAGS, HEADERS, RECORDED_ETAG, is_md5_etag, legal_hold, retention_in_force,
                                same_headers, same_object, tag_set)

MULTIPART_THRESHOLD = 256 * 2**20
PART_SIZE = 128 * 2**20
PART_THREADS = 8


@dataclass(frozen=True)
class CopySettings:
    """What every write into the target carries beyond the object itself (see the module's docstring)."""

    target_kms_key: str | None = None  # a key ARN (preflight resolves ids and aliases): every copy re-encrypted with it
    object_lock: bool = False  # the source bucket has Object Lock: copies keep each object's retention and legal hold
    acls: bool = False  # the source bucket's ACLs are enabled: copies get their source's grants (lambdas/s3_attributes)

    @property
    def decided_by_heads(self) -> bool:
        """Whether pairs must be HEADed to be called the same: neither a key nor a lock shows in a
        listing (lambdas/s3_compare.py, steps 6 and 7)."""
        return bool(self.target_kms_key or self.object_lock)

    def same(self, source: dict, target: dict | None) -> bool:
        """The one rule (lambdas/s3_compare.same_object) with these settings' steps."""
        return same_object(source, target, self.target_kms_key, self.object_lock)

    def write_arguments(self, source_head: dict) -> dict:
        """Encryption and lock arguments of a write into the target (CopyObject, CreateMultipartUpload)."""
        arguments = {}
        if self.target_kms_key:
            arguments.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.target_kms_key)
        if self.object_lock:
            if retention := retention_in_force(source_head):
                arguments.update(ObjectLockMode=retention[0], ObjectLockRetainUntilDate=retention[1])
            if legal_hold(source_head):
                arguments["ObjectLockLegalHoldStatus"] = "ON"
        return arguments

    def environment(self) -> dict[str, str]:
        """As the live-sync Lambda's environment variables (read back by from_environment)."""
        return {**({"TARGET_KMS_KEY": self.target_kms_key} if self.target_kms_key else {}),
                **({"OBJECT_LOCK": "true"} if self.object_lock else {}), **({"ACLS": "true"} if self.acls else {})}

    @classmethod
    def from_environment(cls, environment) -> "CopySettings":
        return cls(environment.get("TARGET_KMS_KEY") or None, environment.get("OBJECT_LOCK") == "true",
                   environment.get("ACLS") == "true")

    def after_copy(self, s3, source_bucket: str, key: str, target_bucket: str, version_id: str | None) -> None:
        """What a copy does not carry by itself: the source's grants, where ACLs are enabled (a
        version's ACL is left: histories are copied as content)."""
        if self.acls and not version_id:
            sync_acl(s3, source_bucket, target_bucket, key, target_private=True)


PLAIN = CopySettings()  # no key, no lock: copies as the source is


@dataclass
class CopyResult:
    key: str
    size: int
    source_etag: str
    target_etag: str
    multipart: bool
    version_id: str | None = None  # the copy's own version, on a versioned target


def copy_object(s3, source_bucket: str, key: str, target_bucket: str, size: int,
                multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                etag: str | None = None, storage_class: str | None = None,
                settings: CopySettings = PLAIN, version_id: str | None = None) -> CopyResult:
    """Copy one object, server-side, with its headers, metadata, tags and storage class, and the
    `settings`' key, lock and grants. Idempotent (with `version_id`, each call adds a version:
    lambdas/s3_versions.py decides when to make one).

    With the `etag` and `storage_class` a listing already gave and no settings, a small object takes
    one request; the copy is pinned to that ETag, so an object changed since the listing fails with 412.
    `version_id`: copy that version of the key (one request too, unless its ETags cannot be compared).
    """
    result = _copy_object(s3, source_bucket, key, target_bucket, size, multipart_threshold, part_size, etag,
                          storage_class, settings, version_id)
    settings.after_copy(s3, source_bucket, key, target_bucket, version_id)
    return result


def _copy_object(s3, source_bucket: str, key: str, target_bucket: str, size: int, multipart_threshold: int,
                 part_size: int, etag: str | None, storage_class: str | None, settings: CopySettings,
                 version_id: str | None) -> CopyResult:
    if size > multipart_threshold:
        return copy_multipart(s3, source_bucket, key, target_bucket, part_size, settings, version_id)
    if settings.decided_by_heads:
        return copy_described(s3, source_bucket, key, target_bucket, etag, settings, version_id)
    pinned = {"VersionId": version_id} if version_id else {}
    if etag is None:
        head = s3.head_object(Bucket=source_bucket, Key=key, **pinned)
        etag, storage_class = head["ETag"], head.get("StorageClass")
    etag = etag.strip('"')
    if version_id and not is_md5_etag(etag):  # known from the listing: record the ETag in this one copy
        return copy_described(s3, source_bucket, key, target_bucket, etag, settings, version_id)
    response = s3.copy_object(
        Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key, **pinned},
        CopySourceIfMatch=f'"{etag}"', MetadataDirective="COPY", TaggingDirective="COPY",
        StorageClass=storage_class or "STANDARD",
    )
    target_etag = response["CopyObjectResult"]["ETag"].strip('"')
    if not is_md5_etag(etag) or target_etag != etag or response.get("ServerSideEncryption") \
            in ENCRYPTED_ETAGS or response.get("SSECustomerAlgorithm"):
        if version_id:  # only now known (an encrypted source or target): that version is replaced by one recording it
            s3.delete_object(Bucket=target_bucket, Key=key, VersionId=response["VersionId"])
            return copy_described(s3, source_bucket, key, target_bucket, etag, settings, version_id)
        target_etag = record_source_etag(s3, source_bucket, key, target_bucket, etag, storage_class)
    return CopyResult(key, size, etag, target_etag, False, response.get("VersionId"))


def record_source_etag(s3, source_bucket: str, key: str, target_bucket: str, etag: str,
                       storage_class: str | None) -> str:
    """After a single CopyObject whose two ETags cannot be compared as MD5s (a source uploaded in parts,
    or SSE-KMS / SSE-C objects, whose ETags are not MD5s of the bytes): put the source's ETag in the
    copy's metadata (`ferry-source-etag`, rule step 3c), by copying the target onto itself with the
    source's headers and metadata, so a later comparison sees they are the same bytes instead of
    copying them again on every run. The source is read pinned to the ETag that was copied: if it
    changed since, nothing is recorded (the copy then compares as different and is made again). The
    headers and metadata written are values read from the source, so the source is read again after
    the write and, if they changed meanwhile (a metadata-only change keeps the ETag), written again."""
    target_etag, head = "", source_head(s3, source_bucket, key, etag)
    for _ in range(3):
        if head is None:
            return target_etag
        headers = {name: head[name] for name in HEADERS if name in head}
        response = s3.copy_object(
            Bucket=target_bucket, Key=key, CopySource={"Bucket": target_bucket, "Key": key},
            MetadataDirective="REPLACE", Metadata={**head.get("Metadata", {}), RECORDED_ETAG: etag.strip('"')},
            TaggingDirective="COPY", StorageClass=storage_class or head.get("StorageClass", "STANDARD"), **headers,
        )
        target_etag, written = response["CopyObjectResult"]["ETag"].strip('"'), head
        head = source_head(s3, source_bucket, key, etag)
        if head is None or same_headers(head, written):
            return target_etag
    return target_etag


def source_head(s3, bucket: str, key: str, etag: str) -> dict | None:
    """The source object's HEAD if it still has `etag`, else None."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, IfMatch=f'"{etag.strip(chr(34))}"')
    except ClientError as error:
        if error.response["Error"]["Code"] in ("412", "PreconditionFailed", "404", "NoSuchKey", "NotFound"):
            return None
        raise


def copy_described(s3, source_bucket: str, key: str, target_bucket: str, etag: str | None,
                   settings: CopySettings, version_id: str | None = None) -> CopyResult:
    """A small object copied from its HEAD (pinned to `etag` when a listing gave one: a changed
    object fails with 412, as the copy itself would): one CopyObject passing the headers, metadata
    and source ETag (`ferry-source-etag`) itself, tags copied, with the settings' key and the
    object's lock. Two requests whatever the object's ETag, and one version written. With
    `version_id`, that version (it never changes: no pin, nothing to read again)."""
    pinned = {"VersionId": version_id} if version_id else {"IfMatch": f'"{etag.strip(chr(34))}"'} if etag else {}
    head = s3.head_object(Bucket=source_bucket, Key=key, **pinned)
    etag = head["ETag"].strip('"')
    source = {"Bucket": source_bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    for _ in range(3):  # headers and metadata are written as values read: read again after, as record_source_etag
        response = s3.copy_object(
            Bucket=target_bucket, Key=key, CopySource=source, CopySourceIfMatch=f'"{etag}"',
            MetadataDirective="REPLACE", Metadata={**head.get("Metadata", {}), RECORDED_ETAG: etag},
            TaggingDirective="COPY", StorageClass=head.get("StorageClass", "STANDARD"),
            **{name: head[name] for name in HEADERS if name in head}, **settings.write_arguments(head),
        )
        written, head = head, None if version_id else source_head(s3, source_bucket, key, etag)
        if head is None or (same_headers(head, written) and settings.write_arguments(head)
                            == settings.write_arguments(written)):
            break
    return CopyResult(key, written["ContentLength"], etag, response["CopyObjectResult"]["ETag"].strip('"'), False,
                      response.get("VersionId"))


MAX_PARTS = 10_000  # S3's limit per upload


def fitting_part_size(size: int, part_size: int) -> int:
    """`part_size`, or the smallest whole number of MiB that fits `size` into 10,000 parts."""
    if -(-size // part_size) <= MAX_PARTS:
        return part_size
    mib, smallest = 2**20, -(-size // MAX_PARTS)
    return -(-smallest // mib) * mib


def abort_unfinished(s3, bucket: str, key: str) -> int:
    """Abort the incomplete uploads of `key` (a copy killed mid-way leaves one, billed until aborted):
    the copy about to start replaces whatever they held."""
    aborted = 0
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
        for upload in page.get("Uploads", []):
            if upload["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    return aborted


def copy_multipart(s3, source_bucket: str, key: str, target_bucket: str, part_size: int,
                   settings: CopySettings = PLAIN, version_id: str | None = None) -> CopyResult:
    pinned = {"VersionId": version_id} if version_id else {}
    head = s3.head_object(Bucket=source_bucket, Key=key, **pinned)
    etag, size = head["ETag"], head["ContentLength"]
    part_size = fitting_part_size(size, part_size)
    abort_unfinished(s3, target_bucket, key)
    tags = s3.get_object_tagging(Bucket=source_bucket, Key=key, **pinned)["TagSet"]
    create = {name: head[name] for name in HEADERS if name in head}
    # The source's ETag goes with the copy: a multipart copy's own ETag differs from its source's,
    # so this is how a later comparison knows the two are the same bytes.
    metadata = {**head.get("Metadata", {}), RECORDED_ETAG: etag.strip('"')}
    create.update(Bucket=target_bucket, Key=key, Metadata=metadata, StorageClass=head.get("StorageClass", "STANDARD"),
                  **settings.write_arguments(head))
    if tags:
        create["Tagging"] = urlencode({t["Key"]: t["Value"] for t in tags})
    upload_id = s3.create_multipart_upload(**create)["UploadId"]

    def copy_part(number: int) -> dict:
        start = (number - 1) * part_size
        end = min(size, start + part_size) - 1
        part = s3.upload_part_copy(
            Bucket=target_bucket, Key=key, UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": source_bucket, "Key": key, **pinned}, CopySourceRange=f"bytes={start}-{end}",
            CopySourceIfMatch=etag,
        )
        return {"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]}

    parts_count = -(-size // part_size)
    try:
        with ThreadPoolExecutor(min(PART_THREADS, parts_count)) as pool:
            parts = list(pool.map(copy_part, range(1, parts_count + 1)))
        done = s3.complete_multipart_upload(Bucket=target_bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=target_bucket, Key=key, UploadId=upload_id)
        raise
    # The headers, metadata and tags were read at the start and written as values: read them again
    # (the parts' pin covers the bytes only; a metadata-only change keeps the ETag). A version never
    # changes: nothing to read again.
    after = None if version_id else source_head(s3, source_bucket, key, etag)
    if after is not None and not same_headers(after, head):
        raise SourceChanged(f"the headers or metadata of {key} changed during its copy: copy it again")
    if after is not None:
        wanted = tag_set(s3.get_object_tagging(Bucket=source_bucket, Key=key))
        if wanted != {t["Key"]: t["Value"] for t in tags}:
            sync_tags(s3, source_bucket, target_bucket, key)
    return CopyResult(key, size, etag.strip('"'), done["ETag"].strip('"'), True, done.get("VersionId"))


class SourceChanged(Exception):
    """The source object changed while it was copied in a way no pin catches: the copy is made again
    (a task's retry, or the event's redelivery, reads the source afresh)."""
