"""Bulk sync of a bucket: compare both sides range by range, copy server-side in parallel, delete extras.

The source is listed by key ranges (ferry/s3/listing.py); as each range comes in, the target is
listed over the same range and the two compared (ferry/s3/compare.py). Memory holds the ranges in
hand, not the bucket, and copying can start while the listing goes on. A rerun after a kill lists
again and copies only what is still missing or different; a no-op re-sync does only the listings
and comparisons (plus a HEAD on each side for the pairs the listings cannot settle, such as
multipart copies).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass

import pandas as pd
from botocore.exceptions import ClientError

from ferry.s3.compare import BucketPlan, plan_sync
from ferry.s3.listing import PAGE_SIZE, KeyRange, as_frame, iter_ranges, list_range
from lambdas.s3_apply import head
from lambdas.s3_compare import same_object
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE, CopyResult, copy_object

COPY_THREADS = 16  # per batch task; two batch tasks run at once: 32 copies in flight (best measured on moto)
COMPARE_THREADS = 4  # target listings and HEADs of ranges the source listing has finished
DELETE_BATCH = 1000


@dataclass
class RangeComparison:
    """Both sides of one key range and what differs there."""
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


def compare_range(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str, key_range: KeyRange,
                  source_rows: list[dict], deep: bool = False, page_size: int = PAGE_SIZE) -> RangeComparison:
    """Compare one range the source listing has finished with the same range of the target."""
    target_rows: list[dict] = []
    parts = [key_range]
    while parts:  # the target's side of the range, however many pages it takes
        rows, parts = list_range(s3_target, target_bucket, prefix, parts[0], page_size, may_split=False)
        target_rows += rows
    source, target = as_frame(source_rows), as_frame(target_rows)
    def look_closer(keys: list[str]) -> dict[str, bool]:
        return compare_pairs(s3_source, s3_target, source_bucket, target_bucket, keys)

    return RangeComparison(source, target, plan_sync(source, target, look_closer, deep))


def compare_in_ranges(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                      deep: bool = False, page_size: int = PAGE_SIZE) -> Iterator[RangeComparison]:
    """Both buckets compared range by range, in whatever order the ranges finish. Together the
    ranges cover every key of both sides once (a target key outside every source range cannot
    exist: the ranges run from the first possible key to the last)."""
    with ThreadPoolExecutor(COMPARE_THREADS) as pool:
        comparing: set[Future] = set()
        for key_range, rows in iter_ranges(s3_source, source_bucket, prefix, page_size):
            comparing.add(pool.submit(compare_range, s3_source, s3_target, source_bucket, target_bucket, prefix,
                                      key_range, rows, deep, page_size))
            # The listing waits while comparisons lag (and, through the caller, while copies do):
            # what is held is a few ranges, however big the bucket.
            finished, comparing = wait(comparing, timeout=None if len(comparing) >= 2 * COMPARE_THREADS else 0,
                                       return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)
        yield from (f.result() for f in as_completed(comparing))


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
