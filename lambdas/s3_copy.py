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

from lambdas.s3_compare import ENCRYPTED_ETAGS, RECORDED_ETAG, is_md5_etag

MULTIPART_THRESHOLD = 256 * 2**20
PART_SIZE = 128 * 2**20
PART_THREADS = 8
HEADERS = ["ContentType", "ContentEncoding", "ContentDisposition", "CacheControl", "ContentLanguage", "Expires"]


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
                version_id: str | None = None) -> CopyResult:
    """Copy one object, server-side, with its headers, metadata, tags and storage class. Idempotent
    (with `version_id`, each call adds a version: lambdas/s3_versions.py decides when to make one).

    With the `etag` and `storage_class` a listing already gave, a small object takes one request;
    the copy is pinned to that ETag, so an object changed since the listing fails with 412.
    `version_id`: copy that version of the key (one request too, unless its ETags cannot be compared).
    """
    if size > multipart_threshold:
        return copy_multipart(s3, source_bucket, key, target_bucket, part_size, version_id)
    pinned = {"VersionId": version_id} if version_id else {}
    if etag is None:
        head = s3.head_object(Bucket=source_bucket, Key=key, **pinned)
        etag, storage_class = head["ETag"], head.get("StorageClass")
    etag = etag.strip('"')
    if version_id and not is_md5_etag(etag):  # known from the listing: record the ETag in this one copy
        response = copy_recording_etag(s3, source_bucket, key, target_bucket, etag, storage_class, version_id)
        return CopyResult(key, size, etag, response["CopyObjectResult"]["ETag"].strip('"'), False,
                          response.get("VersionId"))
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
            response = copy_recording_etag(s3, source_bucket, key, target_bucket, etag, storage_class, version_id)
            return CopyResult(key, size, etag, response["CopyObjectResult"]["ETag"].strip('"'), False,
                              response.get("VersionId"))
        target_etag = record_source_etag(s3, source_bucket, key, target_bucket, etag, storage_class)
    return CopyResult(key, size, etag, target_etag, False, response.get("VersionId"))


def copy_recording_etag(s3, source_bucket: str, key: str, target_bucket: str, etag: str,
                        storage_class: str | None, version_id: str) -> dict:
    """One CopyObject of a source version carrying its headers and metadata (read from its HEAD)
    plus `ferry-source-etag`: on a versioned target the ETag must come with the copy itself, as a
    copy onto itself (record_source_etag) would be a second version. Returns CopyObject's answer."""
    head = s3.head_object(Bucket=source_bucket, Key=key, VersionId=version_id)
    headers = {name: head[name] for name in HEADERS if name in head}
    return s3.copy_object(
        Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key, "VersionId": version_id},
        MetadataDirective="REPLACE", Metadata={**head.get("Metadata", {}), RECORDED_ETAG: etag.strip('"')},
        TaggingDirective="COPY", StorageClass=storage_class or head.get("StorageClass", "STANDARD"), **headers,
    )


def record_source_etag(s3, source_bucket: str, key: str, target_bucket: str, etag: str,
                       storage_class: str | None) -> str:
    """After a single CopyObject whose two ETags cannot be compared as MD5s (a source uploaded in parts,
    or SSE-KMS / SSE-C objects, whose ETags are not MD5s of the bytes): put the source's ETag in the
    copy's metadata (`ferry-source-etag`, rule step 3c), by copying the target onto itself with the
    source's headers and metadata, so a later comparison sees they are the same bytes instead of
    copying them again on every run. The source is read pinned to the ETag that was copied: if it
    changed since, nothing is recorded (the copy then compares as different and is made again)."""
    try:
        head = s3.head_object(Bucket=source_bucket, Key=key, IfMatch=f'"{etag.strip(chr(34))}"')
    except ClientError as error:
        if error.response["Error"]["Code"] in ("412", "PreconditionFailed", "404", "NoSuchKey", "NotFound"):
            return ""
        raise
    headers = {name: head[name] for name in HEADERS if name in head}
    response = s3.copy_object(
        Bucket=target_bucket, Key=key, CopySource={"Bucket": target_bucket, "Key": key},
        MetadataDirective="REPLACE", Metadata={**head.get("Metadata", {}), RECORDED_ETAG: etag.strip('"')},
        TaggingDirective="COPY", StorageClass=storage_class or head.get("StorageClass", "STANDARD"), **headers,
    )
    return response["CopyObjectResult"]["ETag"].strip('"')


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
                   version_id: str | None = None) -> CopyResult:
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
    create.update(Bucket=target_bucket, Key=key, Metadata=metadata, StorageClass=head.get("StorageClass", "STANDARD"))
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
    return CopyResult(key, size, etag.strip('"'), done["ETag"].strip('"'), True, done.get("VersionId"))
