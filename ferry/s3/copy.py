"""Operations on one object or a batch of them: server-side copy and delete (rclone's "operations").

What one copy does (headers, metadata, tags, storage class, multipart) is lambdas/s3_copy.py's, the
code the live-sync Lambda runs too; here are the batch forms the bulk sync and the repair use, and
what to do when an object moved on since it was listed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError

from ferry.errors import Stopped
from ferry.stopping import STOPPING

from lambdas.s3_compare import Listed
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE, PLAIN, CopyResult, CopySettings, copy_object

COPY_THREADS = 16  # per batch task; two batch tasks run at once: 32 copies in flight (best measured on moto)
DELETE_BATCH = 1000  # DeleteObjects' limit
GONE = {"404", "NoSuchKey", "NotFound"}
CHANGED = {"412", "PreconditionFailed"}


def copy_listed(s3, source_bucket: str, listed: Listed, target_bucket: str,
                multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                settings: CopySettings = PLAIN) -> CopyResult | None:
    """Copy one listed object. A key deleted since the listing is skipped (None): its delete event
    is in the queue. A key that changed since (its pinned ETag no longer matches) is read again and
    copied once more; if it keeps changing, the task's retry takes over."""
    for attempt in range(2):
        try:
            return copy_object(s3, source_bucket, listed.key, target_bucket, listed.size, multipart_threshold,
                               part_size, listed.etag, listed.storage_class, settings)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in GONE:
                return None
            if code not in CHANGED or attempt:
                raise
            listed = Listed.from_head(listed.key, s3.head_object(Bucket=source_bucket, Key=listed.key))
    return None


def copy_objects(s3, source_bucket: str, target_bucket: str, objects: list[Listed],
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 threads: int = COPY_THREADS, stopping: Callable[[], bool] = STOPPING.is_set,
                 settings: CopySettings = PLAIN) -> list[CopyResult]:
    """Copy listed objects server-side, concurrently, each with the `settings` (a target key, Object
    Lock: lambdas/s3_copy.CopySettings). Each copy is idempotent; safe to retry.
    Returns what was copied (keys deleted meanwhile are left to the queue). Once `stopping()`
    (Ctrl-C, SIGTERM), no further copy starts: the ones in hand finish, then Stopped is raised."""
    if not objects:
        return []

    def copy(listed: Listed) -> CopyResult | None | bool:
        if stopping():
            return False
        return copy_listed(s3, source_bucket, listed, target_bucket, multipart_threshold, part_size, settings)

    with ThreadPoolExecutor(min(threads, len(objects))) as pool:
        results = list(pool.map(copy, objects))
    if any(r is False for r in results):
        raise Stopped(f"the copy into {target_bucket} stopped after the objects in hand")
    return [r for r in results if isinstance(r, CopyResult)]


def delete_keys(s3, bucket: str, keys: list[str]) -> int:
    """Delete `keys` from `bucket`, a thousand per request. Idempotent (a missing key is no error)."""
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start:start + DELETE_BATCH]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(f"{len(response['Errors'])} deletes failed in {bucket}, first {first['Code']}")
    return len(keys)


HEAD_THREADS = 16


def delete_extras(s3, source_bucket: str, target_bucket: str, keys: list[str],
                  multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                  settings: CopySettings = PLAIN) -> int:
    """Delete target keys the source does not have, by the rule every destructive step follows
    (lambdas/s3_apply.py): the source is read just before the delete (a key it has now is left
    alone) and again just after (a key it has by then was written, and perhaps copied by live sync,
    in between: it is copied back), so no key the source has at the moment of the delete stays
    deleted. Returns how many keys stay deleted."""
    from lambdas.s3_apply import head

    if not keys:
        return 0
    with ThreadPoolExecutor(min(HEAD_THREADS, len(keys))) as pool:
        before = list(pool.map(lambda key: head(s3, source_bucket, key), keys))
        absent = [key for key, found in zip(keys, before) if found is None]
        delete_keys(s3, target_bucket, absent)
        after = list(pool.map(lambda key: head(s3, source_bucket, key), absent))
    back = [Listed.from_head(key, found) for key, found in zip(absent, after) if found is not None]
    copy_objects(s3, source_bucket, target_bucket, back, multipart_threshold, part_size, settings=settings)
    return len(absent) - len(back)
