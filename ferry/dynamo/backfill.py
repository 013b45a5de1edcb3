"""Backfill: copy one parallel-scan segment from the source to the target, page by page.

Items travel as raw DynamoDB AttributeValues from Scan to BatchWriteItem: nothing is converted, so
38-digit numbers, binary, sets and nested maps arrive exactly as they left. While one page is being
written, the next is already being scanned. A page's checkpoint is saved only once all of its writes
are confirmed, so a run killed at any moment resumes from a page it has fully written; the page in
flight at the kill is written again.

Live sync writes the same target meanwhile, and BatchWriteItem takes no conditions, so each page
follows the backfill's side of the write rule (lambdas/write_rule.py, where the argument is):
  1. on a run that resumes after live sync left versions (`check_versions`), the page's keys are read
     from the target first and the keys live sync has written are left out;
  2. the rest is written in batches of 25;
  3. every key of the page that live sync in this process wrote since the page's scan began
     (`LiveWrites`) is written again from a consistent read of the source, through the rule's
     condition, so a newer state the batch replaced is put back, and nothing newer is replaced.
A key live sync wrote before the page's scan began needs nothing: the scan saw that state or a
newer one.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ferry.dynamo.capacity import RateLimiter, consumed_units, write_units
from ferry.errors import Stopped
from ferry.stopping import STOPPING
from ferry.state import SegmentProgress
from lambdas import journal
from lambdas.batch_write import put_requests, write_all
from lambdas.dynamo_apply import ITEM_ERRORS, key_identity
from lambdas.write_rule import DELETED, VERSION, Change, apply_change, clear_marker

log = logging.getLogger(__name__)

MIN_DEFAULT_SEGMENTS = 4
MAX_DEFAULT_SEGMENTS = 64
BYTES_PER_SEGMENT = 32 * 2**20
WRITERS_PER_SEGMENT = 4  # batches of one page written at once
MAX_ATTEMPTS = 12  # reads of unprocessed keys, with backoff
REWRITE_ATTEMPTS = 8  # of a page's rewrite, with backoff: about 24 s in all, well within the lease
FATAL_ERRORS = {"AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException",
                "ExpiredTokenException", "ValidationException"}  # waiting does not help


def choose_segments(table_size_bytes: int) -> int:
    """One segment per 32 MiB of table, between 4 and 64. Even a small table copies faster with a
    few scans in flight (measured on moto: 4 segments ~16% faster than 1; on AWS, where latency
    rather than the server limits a single scan, more so); a large one gets enough segments to keep
    many writers busy without overloading the source. TableSizeBytes is hours stale on AWS, which
    is fine for a choice like this."""
    return max(MIN_DEFAULT_SEGMENTS, min(MAX_DEFAULT_SEGMENTS, math.ceil(table_size_bytes / BYTES_PER_SEGMENT)))


def segment_args(segment: int, total_segments: int) -> dict:
    """Scan arguments for one segment. A single segment is a plain scan: the same on AWS, and it
    avoids moto's failure on segmented scans of tables with a binary hash key."""
    return {} if total_segments == 1 else {"Segment": segment, "TotalSegments": total_segments}


class LiveWrites:
    """The keys live sync in this process is writing while the backfill runs: when each was noted
    (before its write was sent) and the highest sequence number written. Kept only as long as a page
    whose scan began before the note can still be in flight, so memory holds a few pages' worth of
    the service's writes, however long the backfill."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.lock = threading.Lock()
        self.noted: dict[str, tuple[float, str, dict]] = {}  # key identity -> (noted at, sequence, key)
        self.open_pages: list[float] = []  # when the scan of each page still being written began

    def note(self, changes: list[tuple[dict, str]]) -> None:
        """Live sync is about to write these (key, sequence number) changes. With no page in flight
        nothing is kept: a page that begins later begins after the note, and needs none."""
        with self.lock:
            if not self.open_pages:
                return
            now = self.clock()
            for key, sequence in changes:
                identity = key_identity(key)
                previous = self.noted.get(identity)
                highest = sequence if previous is None or int(sequence) > int(previous[1]) else previous[1]
                self.noted[identity] = (now, highest, key)

    def page_begins(self) -> float:
        """A page's scan is about to be asked for; returns its start, to pass to written_since()."""
        with self.lock:
            began = self.clock()
            self.open_pages.append(began)
            return began

    def written_since(self, keys: list[dict], began: float) -> list[tuple[dict, str]]:
        """Which of `keys` live sync wrote since `began`, with the highest sequence number written."""
        with self.lock:
            found = [self.noted.get(key_identity(key)) for key in keys]
            return [(key, sequence) for noted_at, sequence, key in filter(None, found) if noted_at >= began]

    def page_done(self, began: float) -> None:
        with self.lock:
            self.open_pages.remove(began)
            oldest = min(self.open_pages, default=self.clock())
            self.noted = {identity: noted for identity, noted in self.noted.items() if noted[0] >= oldest}


class JournalWrites:
    """The keys the live-sync Lambda (another process) noted in the state table's journal
    (lambdas/journal.py), for a backfill beside it: what copy_segment asks of LiveWrites, read from
    the journal (the Lambda writes the notes itself).
    Without a shared clock, every key ever noted counts, not only those noted since the page began:
    rewriting one more key under the rule is harmless (it lands only over an older state)."""

    def __init__(self, state_client, state_table: str, migration_id: str):
        self.state_client, self.state_table, self.migration_id = state_client, state_table, migration_id

    def page_begins(self) -> float:
        return 0.0

    def written_since(self, keys: list[dict], began: float) -> list[tuple[dict, str]]:
        noted = journal.read(self.state_client, self.state_table, self.migration_id, keys)
        return [(key, noted[key_identity(key)]) for key in keys if key_identity(key) in noted]

    def page_done(self, began: float) -> None:
        pass


def versioned_keys(client, table: str, keys: list[dict], key_names: list[str]) -> set[str]:
    """Identities of `keys` that live sync has written in the target (a version or a tombstone)."""
    found: set[str] = set()
    names = {f"#k{i}": name for i, name in enumerate(key_names)} | {"#v": VERSION}
    projection = ", ".join([*(f"#k{i}" for i in range(len(key_names))), "#v"])
    for start in range(0, len(keys), 100):
        pending = {table: {"Keys": keys[start:start + 100], "ConsistentRead": True,
                           "ProjectionExpression": projection, "ExpressionAttributeNames": names}}
        for attempt in range(MAX_ATTEMPTS):
            response = client.batch_get_item(RequestItems=pending)
            found |= {key_identity({k: item[k] for k in key_names}) for item in response["Responses"].get(table, [])
                      if VERSION in item}
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(random.uniform(0, min(8.0, 0.05 * 2 ** attempt)))  # throttled: back off
        else:
            raise RuntimeError(f"keys of {table} stayed unprocessed after {MAX_ATTEMPTS} reads")
    return found


def rewrite_live_written(source_client, target_client, source_table: str, target_table: str,
                         written: list[tuple[dict, str]], read_limit: RateLimiter | None = None,
                         write_limit: RateLimiter | None = None) -> None:
    """Step 3: each key live sync wrote while the page was in flight, written again from the
    source's current state with the sequence number live sync wrote: it lands only where the batch
    replaced live sync's state (no version there any more), never over a newer one. An item the
    target refuses is live sync's poison record already (dead-lettered, named by verification)."""
    read_limit, write_limit = read_limit or RateLimiter(None), write_limit or RateLimiter(None)
    for key, sequence in written:
        read_limit.wait()
        response = source_client.get_item(TableName=source_table, Key=key, ConsistentRead=True,
                                          ReturnConsumedCapacity="TOTAL")
        read_limit.pay(consumed_units(response))
        item = response.get("Item")
        write_limit.wait()
        try:
            written_now = apply_change(target_client, target_table, Change(key, sequence, item), guarded=True)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ITEM_ERRORS:
                raise
            continue
        write_limit.pay(written_now.units if written_now.units is not None else write_units(item or key))


def rewrite_journal(source_client, target_client, source_table: str, target_table: str, state_client,
                    state_table: str, migration_id: str) -> int:
    """A run resuming a backfill beside the Lambda: every key the Lambda noted is written again under
    the rule, once, before the backfill goes on, in case a killed run's batch erased that write and
    died before its rewrite. Returns how many keys were rewritten."""
    noted = journal.all_noted(state_client, state_table, migration_id)
    rewrite_live_written(source_client, target_client, source_table, target_table, noted)
    return len(noted)


def copy_segment(
    source_client,
    target_client,
    source_table: str,
    target_table: str,
    progress: SegmentProgress,
    checkpoint: Callable[[SegmentProgress], None],
    key_names: list[str],
    live_writes: LiveWrites | JournalWrites,
    hold_lease: Callable[[], None],
    check_versions: bool = False,
    page_size: int | None = None,
    writers: int = WRITERS_PER_SEGMENT,
    read_limit: RateLimiter | None = None,
    write_limit: RateLimiter | None = None,
    stopping: Callable[[], bool] = STOPPING.is_set,
) -> SegmentProgress:
    """Copy segment `progress.segment` from its last checkpoint to its end; return the final progress.

    Safe to retry and to kill: it starts again at the last confirmed page. Once `stopping()` (Ctrl-C
    or SIGTERM), it raises Stopped after the page in hand is written and checkpointed. Every Scan page and every
    BatchWriteItem waits for its limiter and pays what DynamoDB says it consumed, so the segments
    sharing one limiter stay within it together. Each page follows the write rule (module docstring).
    """
    if progress.done:
        return progress
    if not key_names:
        raise ValueError("the table's key attributes are needed to keep the write rule")
    read_limit, write_limit = read_limit or RateLimiter(None), write_limit or RateLimiter(None)
    # Consistent: the rule relies on a page seeing every change live sync wrote before its scan began.
    scan_args = {"TableName": source_table, "ReturnConsumedCapacity": "TOTAL", "ConsistentRead": True,
                 **segment_args(progress.segment, progress.total_segments)}
    if page_size:
        scan_args["Limit"] = page_size

    def scan_page(start_key: dict | None) -> tuple[dict, float]:
        hold_lease()  # only this process's live sync writes the target while the page is in flight
        began = live_writes.page_begins()
        try:
            read_limit.wait()
            page = source_client.scan(**scan_args, **({"ExclusiveStartKey": start_key} if start_key else {}))
        except BaseException:
            live_writes.page_done(began)
            raise
        read_limit.pay(consumed_units(page))
        return page, began

    def write_page(items: list[dict], began: float) -> None:
        keys = [{name: item[name] for name in key_names} for item in items]
        if check_versions:
            skip = versioned_keys(target_client, target_table, keys, key_names)
            items = [item for item, key in zip(items, keys) if key_identity(key) not in skip]
        write_all(target_client, target_table, put_requests(items), pool=write_pool, limit=write_limit)
        # From here until the rewrite is done, the batch may hold a state older than live sync's: a
        # retry of the page would rescan it and miss a key deleted since, so the rewrite is retried here.
        for attempt in range(REWRITE_ATTEMPTS):
            try:
                rewrite_live_written(source_client, target_client, source_table, target_table,
                                     live_writes.written_since(keys, began), read_limit, write_limit)
                break
            except (ClientError, BotoCoreError, RuntimeError) as error:
                if attempt == REWRITE_ATTEMPTS - 1 or (isinstance(error, ClientError) and
                                                       error.response["Error"]["Code"] in FATAL_ERRORS):
                    raise
                log.warning("segment %d: rewriting live-synced keys failed (%s); again", progress.segment,
                            type(error).__name__)
                time.sleep(min(8.0, 0.25 * 2 ** attempt))
        hold_lease()  # still ours: no other live sync wrote beside this page (else no checkpoint: redone)

    started = time.monotonic()
    copied_now = 0
    with ThreadPoolExecutor(1, thread_name_prefix="scan") as scanner, ThreadPoolExecutor(
        writers, thread_name_prefix="write"
    ) as write_pool:
        next_page = scanner.submit(scan_page, progress.last_key)
        try:
            while not progress.done:
                page, began = next_page.result()
                next_page = None
                last_key = page.get("LastEvaluatedKey")
                if last_key and not stopping():
                    next_page = scanner.submit(scan_page, last_key)  # scan ahead while this page is written
                items = page["Items"]
                try:
                    write_page(items, began)
                finally:
                    live_writes.page_done(began)
                copied_now += len(items)
                progress = replace(
                    progress,
                    last_key=last_key,
                    items=progress.items + len(items),
                    pages=progress.pages + 1,
                    done=last_key is None,
                )
                checkpoint(progress)
                if stopping() and not progress.done:
                    raise Stopped(f"the backfill of {source_table} stopped after the page in hand (segment "
                                  f"{progress.segment}: {progress.items} items checkpointed)")
        finally:  # a page scanned ahead and never written no longer holds notes back
            if next_page is not None and next_page.exception() is None:
                live_writes.page_done(next_page.result()[1])
    log.info(
        "segment %d/%d of %s: %d items copied in %.1fs (%d in total)",
        progress.segment, progress.total_segments, source_table, copied_now,
        time.monotonic() - started, progress.items,
    )
    return progress


def clear_markers(client, table: str, key_names: list[str], segments: int) -> int:
    """Remove every write-rule marker from `table` (a tombstone is deleted, a version removed), each
    only if it is still the one read: a parallel scan that reads only keys and markers. Returns how
    many were cleared. Safe to rerun."""
    projection = ", ".join(f"#k{i}" for i in range(len(key_names))) + ", #v, #d"
    names = {f"#k{i}": name for i, name in enumerate(key_names)} | {"#v": VERSION, "#d": DELETED}

    def clear_segment(segment: int) -> int:
        cleared = 0
        for page in client.get_paginator("scan").paginate(
                TableName=table, FilterExpression="attribute_exists(#v)", ProjectionExpression=projection,
                ExpressionAttributeNames=names, ConsistentRead=True, **segment_args(segment, segments)):
            for item in page["Items"]:
                key = {name: item[name] for name in key_names}
                cleared += clear_marker(client, table, key, item[VERSION], DELETED in item)
        return cleared

    with ThreadPoolExecutor(min(segments, 16), thread_name_prefix="clear") as pool:
        return sum(pool.map(clear_segment, range(segments)))
