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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from lambdas.s3_compare import ENCRYPTED_ETAGS, HEADERS, RECORDED_ETAG, is_md5_etag, same_headers, tag_set

MULTIPART_THRESHOLD = 256 * 2**20
PART_SIZE = 128 * 2**20
PART_THREADS = 8


@dataclass
class CopyResult:
    key: str
    size: int
    source_etag: str
    target_etag: str
    multipart: bool


def copy_object(s3, source_bucket: str, key: str, target_bucket: str, size: int,
                multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                etag: str | None = None, storage_class: str | None = None) -> CopyResult:
    """Copy one object, server-side, with its headers, metadata, tags and storage class. Idempotent.

    With the `etag` and `storage_class` a listing already gave, a small object takes one request;
    the copy is pinned to that ETag, so an object changed since the listing fails with 412.
    """
    if size > multipart_threshold:
        return copy_multipart(s3, source_bucket, key, target_bucket, part_size)
    if etag is None:
        head = s3.head_object(Bucket=source_bucket, Key=key)
        etag, storage_class = head["ETag"], head.get("StorageClass")
    response = s3.copy_object(
        Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key},
        CopySourceIfMatch=f'"{etag.strip(chr(34))}"', MetadataDirective="COPY", TaggingDirective="COPY",
        StorageClass=storage_class or "STANDARD",
    )
    target_etag = response["CopyObjectResult"]["ETag"].strip('"')
    if not is_md5_etag(etag.strip('"')) or target_etag != etag.strip('"') or response.get("ServerSideEncryption") \
            in ENCRYPTED_ETAGS or response.get("SSECustomerAlgorithm"):
        target_etag = record_source_etag(s3, source_bucket, key, target_bucket, etag, storage_class)
    return CopyResult(key, size, etag.strip('"'), target_etag, False)


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


def copy_multipart(s3, source_bucket: str, key: str, target_bucket: str, part_size: int) -> CopyResult:
    head = s3.head_object(Bucket=source_bucket, Key=key)
    etag, size = head["ETag"], head["ContentLength"]
    part_size = fitting_part_size(size, part_size)
    abort_unfinished(s3, target_bucket, key)
    tags = s3.get_object_tagging(Bucket=source_bucket, Key=key)["TagSet"]
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
            CopySource={"Bucket": source_bucket, "Key": key}, CopySourceRange=f"bytes={start}-{end}",
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
    # (the parts' pin covers the bytes only; a metadata-only change keeps the ETag).
    after = source_head(s3, source_bucket, key, etag)
    if after is not None and not same_headers(after, head):
        raise SourceChanged(f"the headers or metadata of {key} changed during its copy: copy it again")
    if after is not None:
        wanted = tag_set(s3.get_object_tagging(Bucket=source_bucket, Key=key))
        if wanted != {t["Key"]: t["Value"] for t in tags}:
            from lambdas.s3_apply import sync_tags  # the one way tags are written after the fact

            sync_tags(s3, source_bucket, target_bucket, key)
    return CopyResult(key, size, etag.strip('"'), done["ETag"].strip('"'), True)


class SourceChanged(Exception):
    """The source object changed while it was copied in a way no pin catches: the copy is made again
    (a task's retry, or the event's redelivery, reads the source afresh)."""
