"""Bulk sync of a bucket: decide what to copy, in batches, while the comparison goes on.

The sync only schedules (rclone's split): the comparison (ferry/s3/compare.py) says what differs,
range by range; this gathers what to copy into batches as the ranges come in, so the first copies
start within a few requests and memory holds a batch, not the bucket; the copies themselves are
ferry/s3/copy.py's. A rerun after a kill compares again and copies only what is still missing or
different; a no-op re-sync does only the listings and comparisons (plus a HEAD on each side for the
pairs the listings cannot settle, such as multipart copies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ferry.s3.compare import RangeComparison
from lambdas.s3_compare import Listed

KEYS_PER_BATCH = 1000


def batches_to_copy(comparisons: Iterable[RangeComparison], seen: Callable[[RangeComparison], None],
                    batch_size: int = KEYS_PER_BATCH) -> Iterator[list[Listed]]:
    """The objects to copy, `batch_size` at a time, as the comparisons come in; `seen(comparison)`
    is told of every range first (for the report and the progress line). Lazy: while the caller
    holds a batch, nothing more is compared or listed."""
    waiting: list[Listed] = []
    for comparison in comparisons:
        seen(comparison)
        waiting += comparison.to_copy
        while len(waiting) >= batch_size:
            yield waiting[:batch_size]
            waiting = waiting[batch_size:]
    if waiting:
        yield waiting


def listing_is_proof(planned: int, deleted: int, drained: dict) -> bool:
    """Whether the bulk sync's comparison still proves the buckets equal after the drain: only if it
    found nothing to copy or delete and the drain applied no event and failed none (a failed event is
    a change that may not be in the target)."""
    return not (planned or deleted or drained["messages"] or drained["failed"])
