"""Verify: are two tables equal? A count and an order-independent checksum of each, compared.

Both tables are read with consistent parallel scans (never `ItemCount`, which is hours stale on
AWS), each segment reduced to a Digest as it is read, so memory does not grow with the table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ferry.dynamo.checksum import Digest, digest_items

MAX_VERIFY_THREADS = 32


@dataclass
class TableComparison:
    equal: bool
    source_items: int
    target_items: int
    source_checksum: str
    target_checksum: str


def digest_segment(client, table: str, segment: int, total_segments: int, page_size: int | None = None) -> Digest:
    digest = Digest()
    args = {"TableName": table, "Segment": segment, "TotalSegments": total_segments, "ConsistentRead": True}
    if page_size:
        args["Limit"] = page_size
    for page in client.get_paginator("scan").paginate(**args):
        digest = digest.add(digest_items(page["Items"]))
    return digest


def _sum(futures) -> Digest:
    total = Digest()
    for future in futures:
        total = total.add(future.result())
    return total


def compare_tables(source_client, target_client, source: str, target: str, segments: int) -> TableComparison:
    """Digest every segment of both tables concurrently and compare the totals."""
    with ThreadPoolExecutor(min(MAX_VERIFY_THREADS, 2 * segments), thread_name_prefix="verify") as pool:
        source_parts = [pool.submit(digest_segment, source_client, source, s, segments) for s in range(segments)]
        target_parts = [pool.submit(digest_segment, target_client, target, s, segments) for s in range(segments)]
        source_digest, target_digest = _sum(source_parts), _sum(target_parts)
    return TableComparison(
        equal=source_digest == target_digest,
        source_items=source_digest.items,
        target_items=target_digest.items,
        source_checksum=source_digest.hex,
        target_checksum=target_digest.hex,
    )
