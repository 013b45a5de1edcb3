"""List a bucket in parallel by key ranges, so one huge bucket, flat or deep, is listed by many workers.

S3 returns keys in UTF-8 binary order, 1,000 per request, each request after the previous one: a
bucket of 100 million keys is 100,000 round trips in a row. Ferry cuts the key space into ranges and
lists each on its own (StartAfter the range's start, stopping past its end). It begins with one range,
the whole prefix. When a range's pages keep coming back full, the rest of it is split: at the
"folders" that follow (one Delimiter request names them), and beyond those, or on a flat level, at
the numbers and words its keys are made of. Ranges touch end to end, so every key is listed exactly
once whatever the split; a split that guessed wrong costs an empty request, never a key. Measured on
eight layouts (flat, hashed, dated, nested, UUID folders): at most about twice the requests of a
serial listing, and on large buckets chains of dependent requests 5-100x shorter
(tests/test_s3_listing.py replays them against an in-memory bucket).

Each object comes out as a `Listed` record (key, size, ETag, storage class): what the "same object"
rule (lambdas/s3_compare.py) and a copy need.
"""

from __future__ import annotations

import os
import string
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from lambdas.s3_compare import Listed

LISTING_THREADS = 16
PAGE_SIZE = 1000  # the most S3 returns per request
PAGES_PER_CALL = 10  # then a range that cannot be split is handed on in pieces


@dataclass(frozen=True)
class KeyRange:
    after: str | None = None  # exclusive start; None: the prefix's first key
    last: str | None = None  # inclusive end; None: the prefix's last key


def _same_class(c: str) -> str:
    """The characters a key is likely to hold where it holds `c`: digits, or letters of its case."""
    for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
        if c in alphabet:
            return alphabet
    return ""


def split_by_characters(keys: list[str], prefix: str, last: str | None) -> list[str]:
    """Bounds for the keys after a full page of a flat level, guessed from the page's last key.

    Keys after it most likely differ from it in a number or at the start of a word, at or before
    where the page's own keys differ ("object-00999" is followed by "object-01...", then
    "object-1..."). Bounds are cut on two such positions, so near ranges are small and far ones wide.
    """
    final = keys[-1]
    varies = len(os.path.commonprefix([keys[0], final]))
    seen = {k[varies] for k in keys if len(k) > varies}
    bounds: list[str] = []
    for position in range(min(varies, len(final) - 1), len(prefix) - 1, -1):
        current = final[position]
        word_start = position == len(prefix) or not final[position - 1].isalnum()
        if not (current.isdigit() or (word_start and current.isalpha())):
            continue
        alphabet = sorted(set(_same_class(current)) | (seen if position == varies else set()))
        level = [final[:position] + c for c in alphabet if c > current and (last is None or final[:position] + c < last)]
        if level:
            bounds += level
            if len(bounds) > len(level):  # two levels
                break
    return bounds


def split_by_folders(s3, bucket: str, keys: list[str], prefix: str, last: str | None) -> list[str]:
    """Bounds at the "folders" that follow a full page. A Delimiter request at a folder the page's
    keys share lists the names of the next sub-folders (so no range is empty); tried at the deepest
    such folder whose keys go deeper, then one up. They are grouped as many to a range as the page
    itself spanned: about a page of keys each."""
    shared = os.path.commonprefix([keys[0], keys[-1]])
    parents = [shared[:i + 1] for i, c in enumerate(shared) if c == "/" and i + 1 >= len(prefix)]
    parents = ([prefix] if prefix not in parents else []) + parents
    probes = 0
    for parent in reversed(parents):
        if not any("/" in k[len(parent):] for k in keys):
            continue  # a flat level: no sub-folders to find
        page = s3.list_objects_v2(Bucket=bucket, Prefix=parent, Delimiter="/", StartAfter=keys[-1])
        folders = [p["Prefix"] for p in page.get("CommonPrefixes", [])
                   if p["Prefix"] > keys[-1] and (last is None or p["Prefix"] < last)]
        if len(folders) >= 2:
            spanned = len({k[len(parent):].split("/", 1)[0] for k in keys if "/" in k[len(parent):]})
            return folders[max(spanned, 1) - 1::max(spanned, 1)]
        probes += 1
        if probes == 2:
            break
    return []


def split_rest(s3, bucket: str, keys: list[str], prefix: str, last: str | None) -> list[KeyRange]:
    """Split the keys after `keys[-1]` (a full page, in order) up to `last` into ranges that touch end
    to end. Returns [] when no useful split is found: the range goes on serially."""
    bounds = split_by_folders(s3, bucket, keys, prefix, last)
    # Beyond the folders one request could see, the shape of the keys is the guess.
    bounds += [b for b in split_by_characters(keys, prefix, last) if not bounds or b > bounds[-1]]
    starts = [keys[-1]] + bounds
    return [KeyRange(start, end) for start, end in zip(starts, bounds + [last])] if bounds else []


def list_range(s3, bucket: str, prefix: str, key_range: KeyRange, page_size: int = PAGE_SIZE,
               may_split: bool = True) -> tuple[list[Listed], list[KeyRange]]:
    """The objects of one range, and the ranges the rest of it was split into (then not listed here)."""
    rows: list[Listed] = []
    after, full_pages = key_range.after, 0
    while True:
        request = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if after is not None:
            request["StartAfter"] = after
        page = s3.list_objects_v2(**request)
        listed = page.get("Contents", [])
        inside = [o for o in listed if key_range.last is None or o["Key"] <= key_range.last]
        rows += [Listed.from_listing(o) for o in inside]
        if len(inside) < len(listed) or not page.get("IsTruncated") or not inside:
            return rows, []
        keys = [o["Key"] for o in inside]
        # A second full page says the range is big (the first alone often just fills it): split it.
        full_pages += 1
        parts = split_rest(s3, bucket, keys, prefix, key_range.last) if may_split and full_pages >= 2 else []
        if parts:
            return rows, parts
        if full_pages == PAGES_PER_CALL:  # hand the rest on, so no call holds more than this many pages
            return rows, [KeyRange(keys[-1], key_range.last)]
        after = keys[-1]


def iter_ranges(s3, bucket: str, prefix: str = "", page_size: int = PAGE_SIZE,
                threads: int = LISTING_THREADS) -> Iterator[tuple[KeyRange, list[Listed]]]:
    """Every object under `prefix`, range by range as up to `threads` workers finish them. Each
    yielded range is complete (all its objects come with it) and together they cover the prefix
    once, so whoever consumes them can act on a range without waiting for the whole bucket."""
    todo: deque[KeyRange] = deque([KeyRange()])  # ranges known, not started yet
    with ThreadPoolExecutor(threads) as pool:
        running: dict[Future, KeyRange] = {}
        while todo or running:
            # Start ranges only as workers free up: while the caller is busy with a range, nothing
            # more is listed, so what is held stays a few ranges, however big the bucket.
            while todo and len(running) < threads:
                may_split = len(todo) + len(running) < 2 * threads  # split further only if work is short
                key_range = todo.popleft()
                running[pool.submit(list_range, s3, bucket, prefix, key_range, page_size, may_split)] = key_range
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key_range = running.pop(future)
                rows, parts = future.result()
                todo.extend(parts)
                # What this call listed: its whole range, or up to where it handed the rest on.
                yield (KeyRange(key_range.after, parts[0].after) if parts else key_range), rows


def list_range_whole(s3, bucket: str, prefix: str, key_range: KeyRange, page_size: int = PAGE_SIZE) -> list[Listed]:
    """Every object of one range, however many pages it takes (no splitting): the target's side of
    a range the source listing has finished."""
    objects: list[Listed] = []
    parts = [key_range]
    while parts:
        listed, parts = list_range(s3, bucket, prefix, parts[0], page_size, may_split=False)
        objects += listed
    return objects


def list_bucket(s3, bucket: str, prefix: str = "", page_size: int = PAGE_SIZE,
                threads: int = LISTING_THREADS) -> list[Listed]:
    """Every object under `prefix`, in key order (for small buckets and tests; the sync and the
    verification work range by range instead)."""
    return sorted((o for _, objects in iter_ranges(s3, bucket, prefix, page_size, threads) for o in objects),
                  key=lambda o: o.key)
