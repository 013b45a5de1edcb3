"""Verify two tables as a hash tree, pinpoint every difference, and repair it.

1. Each table is scanned in parallel segments. Every item goes into one of BUCKETS buckets chosen by
   a hash of its primary key (not by scan segment: DynamoDB does not put a key in the same segment
   of two tables), and each bucket keeps a count and an order-independent digest. Memory: two
   arrays of BUCKETS numbers per table, whatever the table's size.
2. Equal roots end the check. Otherwise only the differing buckets are read again, key by key, to
   find the candidates: missing (in the source only), extra (in the target only), changed. The
   drill-down reads a bounded number of buckets per pass, so memory stays bounded there too.
3. A candidate becomes a difference only if a strongly consistent re-read of that key on both
   sides still differs: a change in flight during live sync is dismissed, and counted.
4. With repair, each confirmed difference is fixed from the source (put or delete, idempotent, and
   safe while live sync runs: see `repair`) and the affected buckets are checked again.
Both sides are read as the application sees them (lambdas/write_rule.visible): the markers live
sync leaves while a backfill runs are never counted, and a tombstone is a deleted key. With TTL on
the source, an item whose expiry time has passed (at one moment, taken when the verification
starts) counts as absent on both sides, since DynamoDB deletes expired items in the background,
days later at most, on each table at its own pace; such items are counted per side in the report.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from hashlib import blake2b

from botocore.exceptions import ClientError

from ferry.dynamo.backfill import segment_args
from ferry.dynamo.checksum import MODULUS, Digest, canonical_item, digest_items, item_hash
from ferry.errors import Stopped
from ferry.stopping import STOPPING
from lambdas.dynamo_apply import ITEM_ERRORS, key_identity
from lambdas.write_rule import visible

BUCKETS = 4096
MAX_VERIFY_THREADS = 32
MAX_DRILL_ITEMS = 200_000  # items held in memory at once while naming differences
BATCH_GET_LIMIT = 100
SAMPLE_SEGMENTS = 1000
RECHECK_DELAYS = (0.5, 2.0)  # seconds; longer than live sync's usual lag
FLUX_ROUNDS = 5  # more re-reads of a key the service keeps changing, until its source holds still
Settle = Callable[[], None]  # returns once a running live sync has applied every change made before the call


TTL_IGNORED_AFTER_SECONDS = 5 * 365 * 86_400  # DynamoDB's TTL never deletes items expired longer ago


@dataclass(frozen=True)
class Expiry:
    """The tables' TTL attribute (None: no TTL) and the moment the verification compares at."""

    attribute: str | None = None
    at: float = 0.0

    def passed(self, item: dict) -> bool:
        value = item.get(self.attribute) if self.attribute else None
        if not value or "N" not in value:  # DynamoDB's TTL ignores anything but a number
            return False
        try:
            expires = float(value["N"])
        except ValueError:
            return False
        return self.at - TTL_IGNORED_AFTER_SECONDS < expires <= self.at

    def now(self) -> "Expiry":
        """The same rule at the current moment: a re-read must not call an item present that expired
        since (DynamoDB may have deleted it on one side meanwhile). A later cutoff only removes
        candidates, so it agrees with the digests."""
        return replace(self, at=time.time()) if self.attribute else self


NO_EXPIRY = Expiry()


def key_of(item: dict, key_names: list[str]) -> dict:
    return {name: item[name] for name in key_names}


def bucket_of(key: dict) -> int:
    return int.from_bytes(blake2b(canonical_item(key), digest_size=8).digest(), "big") % BUCKETS


@dataclass
class BucketDigests:
    """Count and digest per key-hash bucket; adding two of them is adding bucket by bucket."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    sums: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    expired: int = 0  # items left out: their TTL has passed

    def add_item(self, item: dict, key_names: list[str]) -> None:
        bucket = bucket_of(key_of(item, key_names))
        self.counts[bucket] += 1
        self.sums[bucket] = (self.sums[bucket] + item_hash(item)) % MODULUS

    def merge(self, other: "BucketDigests") -> "BucketDigests":
        return BucketDigests([a + b for a, b in zip(self.counts, other.counts)],
                             [(a + b) % MODULUS for a, b in zip(self.sums, other.sums)], self.expired + other.expired)

    def total(self, buckets=None) -> Digest:
        chosen = range(BUCKETS) if buckets is None else buckets
        return Digest(sum(self.counts[b] for b in chosen), sum(self.sums[b] for b in chosen) % MODULUS)

    def differing(self, other: "BucketDigests") -> list[int]:
        return [b for b in range(BUCKETS) if (self.counts[b], self.sums[b]) != (other.counts[b], other.sums[b])]


@dataclass
class Difference:
    kind: str  # "missing" | "extra" | "changed"
    key: dict
    source_item: dict | None = None  # as re-read, consistently, for repair


@dataclass
class VerifyReport:
    """What a verification found. Keys are in DynamoDB JSON form (attribute type -> value)."""

    source: str
    target: str
    equal: bool
    source_items: int
    target_items: int
    source_checksum: str
    target_checksum: str
    differences: list[Difference] = field(default_factory=list)
    dismissed: int = 0  # candidates a consistent re-read showed equal (changes in flight)
    source_expired: int = 0  # items whose TTL has passed, not yet deleted by DynamoDB: left out
    target_expired: int = 0
    repaired: int = 0
    remaining_after_repair: int | None = None
    sampled: float | None = None  # fraction checked, when --sample was used
    sampled_items: int = 0
    source_buckets: BucketDigests | None = None
    target_buckets: BucketDigests | None = None
    differing_buckets: list[int] = field(default_factory=list)

    def keys(self, kind: str) -> list[dict]:
        return [d.key for d in self.differences if d.kind == kind]


# --- 1. digests -------------------------------------------------------------------------------
def scan_pages(client, table: str, segment: int, total_segments: int, consistent: bool = True):
    """Pages of items as the application sees them: write-rule markers removed, tombstones skipped.
    Ctrl-C or SIGTERM (ferry/stopping.py) ends the scan after the page in hand, with Stopped."""
    args = {"TableName": table, "ConsistentRead": consistent, **segment_args(segment, total_segments)}
    for page in client.get_paginator("scan").paginate(**args):
        if STOPPING.is_set():
            raise Stopped(f"the verification scan of {table} stopped (segment {segment})")
        yield [item for item in map(visible, page["Items"]) if item is not None]


def digest_segment(client, table: str, key_names: list[str], segment: int, total_segments: int,
                   expiry: Expiry = NO_EXPIRY) -> BucketDigests:
    digests = BucketDigests()
    for items in scan_pages(client, table, segment, total_segments):
        for item in items:
            if expiry.passed(item):
                digests.expired += 1
            else:
                digests.add_item(item, key_names)
    return digests


def digest_tables(source_client, target_client, source: str, target: str, key_names: list[str],
                  segments: int, pool: ThreadPoolExecutor,
                  expiry: Expiry = NO_EXPIRY) -> tuple[BucketDigests, BucketDigests]:
    """Both tables' bucket digests, every segment of both read concurrently."""
    source_parts = [pool.submit(digest_segment, source_client, source, key_names, s, segments, expiry)
                    for s in range(segments)]
    target_parts = [pool.submit(digest_segment, target_client, target, key_names, s, segments, expiry)
                    for s in range(segments)]
    source_digests, target_digests = BucketDigests(), BucketDigests()
    for part in source_parts:
        source_digests = source_digests.merge(part.result())
    for part in target_parts:
        target_digests = target_digests.merge(part.result())
    return source_digests, target_digests


# --- 2. drill down ----------------------------------------------------------------------------
def collect_buckets(client, table: str, key_names: list[str], segments: int, buckets: set[int],
                    pool: ThreadPoolExecutor, expiry: Expiry = NO_EXPIRY) -> dict[str, tuple[dict, int]]:
    """key identity -> (key, item hash) for the items of `buckets` only."""

    def one_segment(segment: int) -> dict[str, tuple[dict, int]]:
        found = {}
        for items in scan_pages(client, table, segment, segments):
            for item in items:
                key = key_of(item, key_names)
                if bucket_of(key) in buckets and not expiry.passed(item):
                    found[key_identity(key)] = (key, item_hash(item))
        return found

    collected: dict[str, tuple[dict, int]] = {}
    for part in pool.map(one_segment, range(segments)):
        collected.update(part)
    return collected


def drill_passes(differing: list[int], source: BucketDigests, target: BucketDigests) -> list[set[int]]:
    """Group differing buckets so that each pass holds at most MAX_DRILL_ITEMS items per side."""
    passes: list[set[int]] = [set()]
    held = 0
    for bucket in differing:
        size = max(source.counts[bucket], target.counts[bucket])
        if passes[-1] and held + size > MAX_DRILL_ITEMS:
            passes.append(set())
            held = 0
        passes[-1].add(bucket)
        held += size
    return [p for p in passes if p]


def candidate_keys(source_items: dict, target_items: dict) -> list[dict]:
    keys = [key for identity, (key, _) in source_items.items() if identity not in target_items]
    keys += [key for identity, (key, _) in target_items.items() if identity not in source_items]
    keys += [key for identity, (key, digest) in source_items.items()
             if identity in target_items and target_items[identity][1] != digest]
    return keys


# --- 3. confirm -------------------------------------------------------------------------------
def consistent_get(client, table: str, keys: list[dict], expiry: Expiry = NO_EXPIRY) -> dict[str, dict]:
    """key identity -> item, read with BatchGetItem(ConsistentRead) and every unprocessed key retried."""
    found: dict[str, dict] = {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        pending = {table: {"Keys": keys[start:start + BATCH_GET_LIMIT], "ConsistentRead": True}}
        while pending:
            response = client.batch_get_item(RequestItems=pending)
            for item in map(visible, response["Responses"].get(table, [])):
                if item is not None and not expiry.passed(item):  # a tombstone is a deleted key
                    found[key_identity({k: item[k] for k in keys[0]})] = item
            pending = response.get("UnprocessedKeys") or {}
    return found


def classify(key: dict, src: dict | None, tgt: dict | None) -> Difference | None:
    if src is not None and tgt is None:
        return Difference("missing", key, src)
    if src is None and tgt is not None:
        return Difference("extra", key)
    if src is not None and item_hash(src) != item_hash(tgt):
        return Difference("changed", key, src)
    return None


def confirm(source_client, target_client, source: str, target: str, keys: list[dict],
            recheck_delays: tuple[float, ...] = RECHECK_DELAYS, sleep=time.sleep,
            expiry: Expiry = NO_EXPIRY, settle: Settle | None = None) -> tuple[list[Difference], int]:
    """Re-read every candidate consistently on both sides; keep only what still differs.

    A key written to the source a moment before live sync copies it differs for that moment; so a
    key that differs is read again after each of `recheck_delays`, and only one that differs every
    time is a difference. With `settle` (a running live sync's "wait until every change made before
    now is applied"), each re-read also waits for it: live sync's lag grows under throttling and
    retries far beyond any fixed delay. A key whose source changed between the last two reads is in
    flux (the service keeps writing it, faster than the re-reads): it is read again, up to
    FLUX_ROUNDS more times, until its source holds still; a key that differs while its source holds
    still is a difference. Returns (differences, how many candidates were dismissed).
    """
    planned = 1 + len(recheck_delays)
    delays = (0.0, *recheck_delays, *(recheck_delays[-1:] * FLUX_ROUNDS))
    pending, confirmed, moving = keys, [], []
    source_seen: dict[str, str | None] = {}
    for round_, delay in enumerate(delays):
        if not pending:
            break
        if delay:
            sleep(delay)
            if settle:
                settle()
        at_this_read = expiry.now()  # the same moment for both sides
        now_in_source = consistent_get(source_client, source, pending, at_this_read)
        now_in_target = consistent_get(target_client, target, pending, at_this_read)
        found = [classify(key, now_in_source.get(key_identity(key)), now_in_target.get(key_identity(key)))
                 for key in pending]
        differing = [d for d in found if d is not None]
        seen_before, source_seen = source_seen, {
            key_identity(d.key): item_hash(d.source_item) if d.source_item else None for d in differing}
        if round_ + 1 < planned:
            pending = [d.key for d in differing]
            continue
        # the planned re-reads are done: a key whose source held still since the last read is a difference
        moving = [d for d in differing if round_ and source_seen[key_identity(d.key)] != seen_before[key_identity(d.key)]]
        moved = {key_identity(d.key) for d in moving}
        confirmed += [d for d in differing if key_identity(d.key) not in moved]
        pending = [d.key for d in moving]
    differences = confirmed + moving  # a key still in flux after every round is reported, not dismissed
    return differences, len(keys) - len(differences)


def find_differences(source_client, target_client, source: str, target: str, key_names: list[str], segments: int,
                     buckets: list[int], source_digests: BucketDigests, target_digests: BucketDigests,
                     pool: ThreadPoolExecutor, sides: ThreadPoolExecutor,
                     expiry: Expiry = NO_EXPIRY, settle: Settle | None = None) -> tuple[list[Difference], int]:
    """Name and confirm the differences in `buckets`, a bounded number of buckets per pass.
    `sides` runs the source's collection beside the target's; `pool` runs their segments."""
    differences: list[Difference] = []
    dismissed = 0
    for chosen in drill_passes(buckets, source_digests, target_digests):
        source_future = sides.submit(collect_buckets, source_client, source, key_names, segments, chosen, pool, expiry)
        target_items = collect_buckets(target_client, target, key_names, segments, chosen, pool, expiry)
        keys = candidate_keys(source_future.result(), target_items)
        found, not_confirmed = confirm(source_client, target_client, source, target, keys, expiry=expiry,
                                       settle=settle)
        differences += found
        dismissed += not_confirmed
    return differences, dismissed


# --- 4. repair --------------------------------------------------------------------------------
REPAIR_ROUNDS = 5


def same_item(a: dict | None, b: dict | None) -> bool:
    """Both absent, or both present with equal contents."""
    return (a is None and b is None) or (a is not None and b is not None and item_hash(a) == item_hash(b))


def repair(source_client, target_client, source: str, target: str, differences: list[Difference],
           pool: ThreadPoolExecutor, expiry: Expiry = NO_EXPIRY) -> int:
    """Make the target match the source for each confirmed difference, safely while live sync runs.

    The state written was read from the source a moment ago, and live sync may have applied a newer
    one since: so after each write both sides are read again (consistently), and while they differ
    the source's newer state is written, up to REPAIR_ROUNDS times. Once they agree, nothing newer
    was overwritten: a change live sync applied before the write would be in the source read after
    it, and every later change is live sync's to apply, after the write. A key still moving after the
    last round is left to live sync (the re-check that follows reports it). Returns how many keys
    were repaired."""

    def repair_key(difference: Difference) -> bool:
        state = difference.source_item
        for _ in range(REPAIR_ROUNDS):
            try:
                if state is None:
                    target_client.delete_item(TableName=target, Key=difference.key)
                else:
                    target_client.put_item(TableName=target, Item=state)
            except ClientError as error:
                if error.response["Error"]["Code"] not in ITEM_ERRORS:
                    raise
                return False  # the target refuses this item: it stays a difference, reported by the re-check
            at_this_read = expiry.now()
            state = consistent_get(source_client, source, [difference.key], at_this_read).get(key_identity(difference.key))
            now = consistent_get(target_client, target, [difference.key], at_this_read).get(key_identity(difference.key))
            if same_item(state, now):
                return True
        return False

    return sum(pool.map(repair_key, differences))


# --- the whole check --------------------------------------------------------------------------
def verify_tables(source_client, target_client, source: str, target: str, key_names: list[str],
                  segments: int, fix: bool = False, ttl_attribute: str | None = None,
                  settle: Settle | None = None) -> VerifyReport:
    """Compare two tables fully; name every confirmed difference; with `fix`, repair and re-check.
    `ttl_attribute`: the source's TTL attribute; items expired as of now count as absent.
    `settle`: waits for a live sync running beside the check (see `confirm`)."""
    expiry = Expiry(ttl_attribute, time.time()) if ttl_attribute else NO_EXPIRY
    threads = min(MAX_VERIFY_THREADS, 2 * segments + 2)
    with ThreadPoolExecutor(threads, thread_name_prefix="verify") as pool, \
            ThreadPoolExecutor(2, thread_name_prefix="verify-side") as sides:
        source_digests, target_digests = digest_tables(source_client, target_client, source, target, key_names,
                                                       segments, pool, expiry)
        differing = source_digests.differing(target_digests)
        differences, dismissed = find_differences(source_client, target_client, source, target, key_names,
                                                  segments, differing, source_digests, target_digests, pool, sides,
                                                  expiry, settle)
        report = VerifyReport(
            source=source, target=target, equal=not differences,
            source_items=source_digests.total().items, target_items=target_digests.total().items,
            source_checksum=source_digests.total().hex, target_checksum=target_digests.total().hex,
            differences=differences, dismissed=dismissed, source_buckets=source_digests,
            target_buckets=target_digests, differing_buckets=differing,
            source_expired=source_digests.expired, target_expired=target_digests.expired,
        )
        if fix and differences:
            report.repaired = repair(source_client, target_client, source, target, differences, pool, expiry)
            affected = sorted({bucket_of(d.key) for d in differences})
            remaining, _ = find_differences(source_client, target_client, source, target, key_names, segments,
                                            affected, source_digests, target_digests, pool, sides, expiry, settle)
            report.remaining_after_repair = len(remaining)
            report.equal = not remaining
    return report


def sample_tables(source_client, target_client, source: str, target: str, key_names: list[str],
                  fraction: float, seed: int | None = None) -> VerifyReport:
    """Check a random fraction of both tables: scan a random subset of fine-grained segments of each
    side and look every sampled key up on the other side. Finds missing, extra and changed items in
    the sample; says nothing about the rest."""
    chosen = random.Random(seed).sample(range(SAMPLE_SEGMENTS), max(1, math.ceil(fraction * SAMPLE_SEGMENTS)))

    def sampled_keys(client, table) -> tuple[list[dict], Digest]:
        keys, digest = [], Digest()
        for segment in chosen:
            for items in scan_pages(client, table, segment, SAMPLE_SEGMENTS, consistent=False):
                keys += [key_of(item, key_names) for item in items]
                digest = digest.add(digest_items(items))
        return keys, digest

    with ThreadPoolExecutor(2) as pool:
        source_future = pool.submit(sampled_keys, source_client, source)
        target_keys, target_digest = sampled_keys(target_client, target)
        source_keys, source_digest = source_future.result()
    unique = {key_identity(k): k for k in source_keys + target_keys}
    differences, _ = confirm(source_client, target_client, source, target, list(unique.values()))
    return VerifyReport(
        source=source, target=target, equal=not differences,
        source_items=source_digest.items, target_items=target_digest.items,
        source_checksum=source_digest.hex, target_checksum=target_digest.hex,
        differences=differences, dismissed=0, sampled=fraction, sampled_items=len(unique),
    )
