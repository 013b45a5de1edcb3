"""Bulk sync of a bucket: list both sides, decide, copy server-side in parallel, delete extras.

A rerun after a kill lists again and copies only what is still missing or different; a no-op
re-sync does only the listings and comparisons (plus a HEAD on each side for the pairs the
listings cannot settle, such as multipart copies).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from botocore.exceptions import ClientError

from ferry.s3.compare import BucketPlan, needs_heads, plan_sync
from ferry.s3.listing import list_bucket
from lambdas.s3_apply import head
from lambdas.s3_compare import same_object
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE, CopyResult, copy_object

COPY_THREADS = 16  # per batch task; two batch tasks run at once: 32 copies in flight (best measured on moto)
DELETE_BATCH = 1000


@dataclass
class Listings:
    source_bucket: str
    target_bucket: str
    source: pd.DataFrame
    target: pd.DataFrame
    plan: BucketPlan


def compare_pairs(s3_source, s3_target, source_bucket: str, target_bucket: str, keys: list[str]) -> dict[str, bool]:
    """Step 2 of the comparison for `keys`: HEAD each on both sides (in parallel) and apply the one
    rule. A key deleted from either side meanwhile counts as different (the next pass sees why)."""
    if not keys:
        return {}

    def verdict(key: str) -> bool:
        source = head(s3_source, source_bucket, key)
        return source is not None and same_object(source, head(s3_target, target_bucket, key))

    with ThreadPoolExecutor(min(COPY_THREADS, len(keys))) as pool:
        return dict(zip(keys, pool.map(verdict, keys)))


def compare_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                    deep: bool = False) -> Listings:
    """List both buckets at once and decide, object by object, what differs (ferry/s3/compare.py)."""
    with ThreadPoolExecutor(2) as pool:
        source_listing = pool.submit(list_bucket, s3_source, source_bucket, prefix)
        target = list_bucket(s3_target, target_bucket, prefix)
        source = source_listing.result()
    verdicts = compare_pairs(s3_source, s3_target, source_bucket, target_bucket, needs_heads(source, target, deep))
    return Listings(source_bucket, target_bucket, source, target, plan_sync(source, target, verdicts))


GONE = {"404", "NoSuchKey", "NotFound"}
CHANGED = {"412", "PreconditionFailed"}


def copy_one(s3, source_bucket: str, row: tuple, target_bucket: str, multipart_threshold: int,
             part_size: int) -> CopyResult | None:
    """Copy one listed (key, size, etag, storage class). A key deleted since the listing is skipped
    (None): its delete event is in the queue. A key that changed since (its pinned ETag no longer
    matches) is read again and copied once more; if it keeps changing, the task's retry takes over."""
    key, size, etag, storage_class = (tuple(row) + (None, None))[:4]
    for attempt in range(2):
        try:
            return copy_object(s3, source_bucket, key, target_bucket, size, multipart_threshold, part_size,
                               etag, storage_class)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in GONE:
                return None
            if code not in CHANGED or attempt:
                raise
            head = s3.head_object(Bucket=source_bucket, Key=key)
            size, etag, storage_class = head["ContentLength"], head["ETag"], head.get("StorageClass")
    return None


def copy_keys(s3, source_bucket: str, target_bucket: str, rows: list[tuple],
              multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
              threads: int = COPY_THREADS) -> list[CopyResult]:
    """Copy listed rows (key, size[, etag, storage class]) server-side, concurrently. Each copy is
    idempotent; safe to retry. Returns what was copied (keys deleted meanwhile are left to the queue)."""
    if not rows:
        return []
    with ThreadPoolExecutor(min(threads, len(rows))) as pool:
        results = pool.map(lambda row: copy_one(s3, source_bucket, row, target_bucket, multipart_threshold,
                                                part_size), rows)
        return [r for r in results if r is not None]


def delete_keys(s3, bucket: str, keys: list[str]) -> int:
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start:start + DELETE_BATCH]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(f"{len(response['Errors'])} deletes failed in {bucket}, first {first['Code']}")
    return len(keys)
