"""Compare two buckets range by range with the one "same object" rule (lambdas/s3_compare.py).

As the source's listing finishes each key range (ferry/s3/listing.py), the target is listed over the
same range and every key is judged: by the listings when they decide, else by a HEAD of both sides.
Ranges come out as they finish, so whoever consumes them (the sync, the verification) can act on
one while the listing goes on, and memory holds a few ranges, not the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field

from ferry.s3.listing import PAGE_SIZE, KeyRange, iter_ranges, list_range_whole
from lambdas.s3_apply import head, read_tags
from lambdas.s3_attributes import same_grants
from lambdas.s3_compare import (MAYBE_ARCHIVED_CLASSES, Listed, archived, same_by_listing, same_tags, tag_counts_differ,
                                tags_undecided)
from lambdas.s3_copy import PLAIN, CopySettings

COMPARE_THREADS = 4  # target listings and HEADs of ranges the source listing has finished
HEAD_THREADS = 16  # HEADs of one range's undecided pairs in flight


@dataclass
class RangeComparison:
    """Both sides of one key range and what differs there (keys in order)."""

    source: list[Listed]
    target: list[Listed]
    to_copy: list[Listed]  # source objects missing from the target or different there
    missing: list[str]
    changed: list[str]
    extra: list[str]  # keys only the target has
    archived: list[Listed] = field(default_factory=list)  # differing source objects archived, not restored: not copied


def same_now(s3_source, s3_target, source_bucket: str, target_bucket: str, key: str, source: dict,
             target: dict | None, settings: CopySettings = PLAIN, deep: bool = False) -> bool:
    """Steps 3-8 of the rule for one key whose HEADs on both sides are `source` and `target` (None:
    absent): steps 3-4 and 6-7 from the HEADs, step 5 from their tag counts and, with `deep`, both
    tag sets; with `deep` where copies carry grants (`settings.acls`), step 8, both ACLs read."""
    if not settings.same(source, target) or tag_counts_differ(source, target):
        return False
    if deep and tags_undecided(source, target) and not same_tags(read_tags(s3_source, source_bucket, key) or {},
                                                                 read_tags(s3_target, target_bucket, key) or {}):
        return False
    return not (deep and settings.acls) or same_grants(s3_target, source_bucket, target_bucket, key)


def judge_by_heads(s3_source, s3_target, source_bucket: str, target_bucket: str, keys: list[str],
                   settings: CopySettings = PLAIN, deep: bool = False) -> dict[str, bool]:
    """same_now for `keys`, each HEADed on both sides (in parallel). A key deleted from either side
    meanwhile counts as different (the next pass sees why)."""
    if not keys:
        return {}

    def verdict(key: str) -> bool:
        source = head(s3_source, source_bucket, key)
        target = head(s3_target, target_bucket, key) if source is not None else None
        return source is not None and same_now(s3_source, s3_target, source_bucket, target_bucket, key, source,
                                               target, settings, deep)

    with ThreadPoolExecutor(min(HEAD_THREADS, len(keys))) as pool:
        return dict(zip(keys, pool.map(verdict, keys)))


def compare_objects(source: list[Listed], target: list[Listed], judge_closer, deep: bool = False,
                    still_archived=lambda keys: set(keys)) -> RangeComparison:
    """Judge every key of one range; `judge_closer(keys)` decides the pairs the listings cannot;
    `still_archived(keys)`: which of the differing objects a listing shows in a class that may be
    archived (GLACIER, DEEP_ARCHIVE; INTELLIGENT_TIERING, whose archive tiers only a HEAD shows) are
    archived and not restored (those are set aside as archived, not copied)."""
    on_target = {o.key: o for o in target}
    by_listing = {o.key: same_by_listing(o, on_target.get(o.key), deep) for o in source}
    by_listing.update(judge_closer([key for key, same in by_listing.items() if same is None]))
    differing = [o for o in source if not by_listing[o.key]]
    unreadable = still_archived([o.key for o in differing if o.storage_class in MAYBE_ARCHIVED_CLASSES])
    to_copy = [o for o in differing if o.key not in unreadable]
    on_source = {o.key for o in source}
    return RangeComparison(
        source=source, target=target, to_copy=to_copy,
        missing=[o.key for o in to_copy if o.key not in on_target],
        changed=[o.key for o in to_copy if o.key in on_target],
        extra=sorted(key for key in on_target if key not in on_source),
        archived=[o for o in differing if o.key in unreadable],
    )


def compare_range(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str, key_range: KeyRange,
                  source: list[Listed], deep: bool = False, page_size: int = PAGE_SIZE,
                  settings: CopySettings = PLAIN) -> RangeComparison:
    """Compare one range the source listing has finished with the same range of the target. With a
    target key or Object Lock (`settings`), the listings cannot show what must be the same: every
    same-size pair is HEADed on both sides, as with `deep` (on AWS a KMS copy's ETag is no MD5, so
    after the first run with a key those pairs are HEADed anyway)."""
    target = list_range_whole(s3_target, target_bucket, prefix, key_range, page_size)

    def judge_closer(keys: list[str]) -> dict[str, bool]:
        return judge_by_heads(s3_source, s3_target, source_bucket, target_bucket, keys, settings, deep)

    def still_archived(keys: list[str]) -> set[str]:  # a HEAD says whether a restore has finished
        return {key for key in keys if (found := head(s3_source, source_bucket, key)) is None or archived(found)}

    return compare_objects(source, target, judge_closer, deep or settings.decided_by_heads, still_archived)


def compare_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                    deep: bool = False, page_size: int = PAGE_SIZE,
                    settings: CopySettings = PLAIN) -> Iterator[RangeComparison]:
    """Both buckets compared range by range, in whatever order the ranges finish. Together the
    ranges cover every key of both sides once (a target key outside every source range cannot
    exist: the ranges run from the first possible key to the last)."""
    with ThreadPoolExecutor(COMPARE_THREADS) as pool:
        comparing: set[Future] = set()
        for key_range, listed in iter_ranges(s3_source, source_bucket, prefix, page_size):
            comparing.add(pool.submit(compare_range, s3_source, s3_target, source_bucket, target_bucket, prefix,
                                      key_range, listed, deep, page_size, settings))
            # The listing waits while comparisons lag (and, through the caller, while copies do):
            # what is held is a few ranges, however big the bucket.
            finished, comparing = wait(comparing, timeout=None if len(comparing) >= 2 * COMPARE_THREADS else 0,
                                       return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)
        yield from (f.result() for f in as_completed(comparing))
