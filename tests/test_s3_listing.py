"""Parallel listing by key ranges, and the rule that decides whether two objects are the same."""

from __future__ import annotations

import base64
import itertools
import hashlib
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from ferry.s3.listing import list_bucket, split_by_characters
from ferry.s3.verify import verify_buckets
from lambdas.s3_compare import same_object


@pytest.fixture
def s3(aws):
    return boto3.client("s3")


def fill(s3, bucket: str, keys: list[str]) -> None:
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))


def listed_with_requests(s3, bucket: str, page_size: int) -> tuple[list[str], list]:
    requests = []
    s3.meta.events.register("provide-client-params.s3.ListObjectsV2",
                            lambda params, **_: requests.append(params.get("StartAfter")))
    listed = list_bucket(s3, bucket, page_size=page_size)
    return [o.key for o in listed], requests


FLAT = [f"object-{i:05d}" for i in range(1500)]
NESTED = [f"logs/{2024 + i % 3}/{i % 12 + 1:02d}/part-{i:04d}.gz" for i in range(1200)] + ["readme", "zz/top"]
TRICKY = [f"{p}{i}" for i in range(40) for p in ("red flower ", "a+b=", "100% ", "ünï/ключ 🚀", "dir/", "")] + ["dir/"]


@pytest.mark.parametrize("layout", [FLAT, NESTED, TRICKY], ids=["flat", "nested", "tricky-keys"])
def test_parallel_listing_lists_every_key_exactly_once_over_many_ranges(s3, layout):
    fill(s3, "listed", layout)
    keys, requests = listed_with_requests(s3, "listed", page_size=100)

    assert keys == sorted(set(layout))  # each key once, in S3's order (UTF-8 binary = code point order)
    pages = -(-len(set(layout)) // 100)
    assert len(set(requests)) > 3, "the key space was not split into ranges"
    assert len(requests) <= 2 * pages + 10, f"{len(requests)} requests for {pages} pages of keys"


def test_a_bucket_of_one_page_is_listed_in_one_request(s3):
    fill(s3, "small", FLAT[:99])
    keys, requests = listed_with_requests(s3, "small", page_size=100)
    assert keys == FLAT[:99] and requests == [None]


def test_listing_under_a_prefix_stays_inside_it(s3):
    fill(s3, "prefixed", NESTED)
    listed = list_bucket(s3, "prefixed", prefix="logs/2025/", page_size=50)
    assert [o.key for o in listed] == sorted(k for k in NESTED if k.startswith("logs/2025/"))


def test_flat_keys_split_on_the_numbers_and_words_that_follow_the_page():
    assert split_by_characters([f"object-{i:05d}" for i in range(1000)], "", None) == (
        [f"object-0{d}" for d in "123456789"] + [f"object-{d}" for d in "123456789"])
    # the page ends on the highest digit: the bounds start one position earlier
    assert split_by_characters(["object-09000", "object-09999"], "", None)[0] == "object-1"
    # nothing below the range's end: no split (the range goes on serially)
    assert split_by_characters(["a1", "a9"], "", last="a9~") == []


def sha256(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def head(size=5, etag="5d41402abc4b2a76b9719d911017c592", **extra) -> dict:
    return {"ContentLength": size, "ETag": f'"{etag}"', **extra}


def test_same_object_uses_the_strongest_evidence_both_sides_have():
    md5 = "5d41402abc4b2a76b9719d911017c592"
    assert same_object(head(), head()) and not same_object(head(), head(etag="0" * 32))
    assert not same_object(head(), head(size=6)) and not same_object(head(), None)
    # a full-object checksum both have decides, over ETags
    assert not same_object(head(ChecksumSHA256="x"), head(ChecksumSHA256="y"))
    assert same_object(head(etag="a" * 32, ChecksumCRC32="c"), head(etag="b" * 32, ChecksumCRC32="c"))
    # composite (per-part) checksums depend on the part size: ignored
    assert not same_object(head(etag="a-2", ChecksumCRC32="c-2"), head(etag="b-3", ChecksumCRC32="c-2"))
    # KMS ETags are not MD5s: equal bytes can have different ETags; the recorded source ETag decides
    kms = {"ServerSideEncryption": "aws:kms"}
    recorded = {"Metadata": {"ferry-source-etag": "a" * 32}}
    assert same_object(head(etag="a" * 32, **kms), head(etag="b" * 32, **kms, **recorded))
    assert not same_object(head(etag="a" * 32, **kms), head(etag="b" * 32, **kms))
    # multipart ETags: the recorded source ETag decides
    assert same_object(head(etag="f-2"), head(etag="e-3", Metadata={"ferry-source-etag": "f-2"}))
    assert not same_object(head(etag="f-2"), head(etag=md5, Metadata={"ferry-source-etag": "other-2"}))


def test_checksums_decide_where_etags_cannot_and_deep_reads_them_everywhere(s3, run_ferry):
    for bucket in ("sums-src", "sums-dst"):
        s3.create_bucket(Bucket=bucket)
    body = b"hello"
    s3.put_object(Bucket="sums-src", Key="k", Body=body, ChecksumAlgorithm="SHA256")
    # same bytes (equal MD5 ETags) but a checksum that says otherwise: only a deep comparison sees it
    s3.put_object(Bucket="sums-dst", Key="k", Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha256(b"other"))
    # the target's multipart-looking case: same size, different bytes, stale recorded ETag
    source_etag = s3.put_object(Bucket="sums-src", Key="m", Body=b"abcde", ChecksumAlgorithm="SHA256")["ETag"]
    s3.put_object(Bucket="sums-dst", Key="m", Body=b"vwxyz", ChecksumAlgorithm="SHA256",
                  Metadata={"ferry-source-etag": source_etag.strip('"')})

    quick = verify_buckets(s3, s3, "sums-src", "sums-dst")
    deep = verify_buckets(s3, s3, "sums-src", "sums-dst", deep=True)
    assert quick.changed == ["m"]
    assert deep.changed == ["k", "m"]
    verified = run_ferry("verify", "bucket", "sums-src", "sums-dst", "--deep", "--json")
    assert verified.returncode == 1 and verified.json["changed"] == ["k", "m"]


class InMemoryBucket:
    """ListObjectsV2 over a sorted key list (Prefix, StartAfter, MaxKeys, Delimiter="/"), counting requests.
    `sizes`: key -> size of the listed object (default 1)."""

    def __init__(self, keys: list[str], sizes: dict[str, int] | None = None):
        self.keys, self.requests, self.sizes = sorted(set(keys)), 0, sizes or {}

    def list_objects_v2(self, Bucket, Prefix="", MaxKeys=1000, StartAfter=None, Delimiter=None):  # noqa: N803
        import bisect

        self.requests += 1
        start = max(bisect.bisect_right(self.keys, StartAfter) if StartAfter else 0, bisect.bisect_left(self.keys, Prefix))
        under = itertools.takewhile(lambda k: k.startswith(Prefix), itertools.islice(self.keys, start, None))
        if Delimiter:
            folders = sorted({Prefix + k[len(Prefix):].split("/", 1)[0] + "/" for k in under if "/" in k[len(Prefix):]})
            return {"CommonPrefixes": [{"Prefix": f} for f in folders[:MaxKeys]]}
        page = [k for _, k in zip(range(MaxKeys + 1), under)]
        return {"Contents": [{"Key": k, "Size": self.sizes.get(k, 1), "ETag": '"e"'} for k in page[:MaxKeys]],
                "IsTruncated": len(page) > MaxKeys}


def longest_chain(bucket: InMemoryBucket, page_size: int) -> tuple[list[str], int]:
    """List range by range, serially, tracking the longest chain of requests that had to follow one another."""
    from ferry.s3.listing import KeyRange, list_range

    keys, todo, longest = [], [(KeyRange(), 0)], 0
    while todo:
        key_range, depth = todo.pop()
        before = bucket.requests
        found, parts = list_range(bucket, "b", "", key_range, page_size)
        depth += bucket.requests - before
        keys += [listed.key for listed in found]
        longest = max(longest, depth)
        todo += [(part, depth) for part in parts]
    return sorted(keys), longest


LARGE_LAYOUTS = {
    "flat": [f"object-{i:06d}" for i in range(100_000)],
    "hashed": [hashlib.md5(str(i).encode()).hexdigest() for i in range(50_000)],
    "dated": [f"events/dt=2026-{m:02d}-{d:02d}/h={h:02d}/f{i}.json"
              for m in range(1, 13) for d in range(1, 29) for h in range(0, 24, 3) for i in range(12)],
    "folders": [f"data/{i % 200:03d}/object-{i:06d}.bin" for i in range(60_000)],
}


@pytest.mark.parametrize("layout", LARGE_LAYOUTS, ids=list(LARGE_LAYOUTS))
def test_large_buckets_are_listed_in_short_chains_for_about_twice_the_requests(layout):
    bucket = InMemoryBucket(LARGE_LAYOUTS[layout])
    keys, chain = longest_chain(bucket, page_size=1000)
    pages = -(-len(bucket.keys) // 1000)

    assert keys == bucket.keys
    assert bucket.requests <= 2.5 * pages, f"{bucket.requests} requests for {pages} pages"
    assert chain <= pages / 4, f"a chain of {chain} requests for {pages} pages"


def test_listed_ranges_cover_the_key_space_once_and_hold_exactly_their_keys():
    from ferry.s3.listing import iter_ranges

    bucket = InMemoryBucket(LARGE_LAYOUTS["folders"][:20_000])
    ranges = list(iter_ranges(bucket, "b", page_size=500))

    assert len(ranges) > 10
    ordered = sorted(ranges, key=lambda r: (r[0].after is not None, r[0].after or ""))
    assert ordered[0][0].after is None and ordered[-1][0].last is None
    assert all(a[0].last == b[0].after for a, b in zip(ordered, ordered[1:]))  # end to end, no gap
    for key_range, listed in ranges:
        inside = [k for k in bucket.keys if (key_range.after is None or k > key_range.after)
                  and (key_range.last is None or k <= key_range.last)]
        assert [o.key for o in listed] == inside


def test_comparing_range_by_range_finds_every_difference_once_with_capped_key_lists():
    from ferry.s3.compare import compare_buckets
    from ferry.s3.verify import ReportBuilder, report_from

    source_keys = [f"data/{i % 50:02d}/{i:05d}" for i in range(6_000)]
    missing = source_keys[::37]
    changed = source_keys[5::101]
    extra = ["aaa-before-everything", "data/07/zzz-between", "zzz-after-everything"]
    source = InMemoryBucket(source_keys)
    target = InMemoryBucket([k for k in source_keys if k not in missing] + extra, sizes=dict.fromkeys(changed, 2))

    full = report_from(compare_buckets(source, target, "src", "dst"), "src", "dst")
    assert (full.missing, full.changed, full.extra) == (sorted(missing), sorted(set(changed) - set(missing)), extra)
    assert full.source_objects == 6_000 and full.target_objects == 6_000 - len(missing) + 3
    assert sorted(o.key for o in full.to_copy) == sorted(set(missing) | set(changed))
    assert full.by_prefix["source objects"].sum() == 6_000 and full.by_prefix["missing"].sum() == len(missing)

    builder = ReportBuilder("src", "dst", keep_keys=False)
    for comparison in compare_buckets(source, target, "src", "dst"):
        builder.add(comparison)
    capped = builder.report()
    assert capped.count("missing") == len(missing) > 100 and len(capped.missing) == 100 and capped.to_copy == []
    assert capped.summary()["changed_count"] == full.count("changed")


def test_the_listing_stays_a_few_ranges_ahead_of_the_comparison_whatever_the_bucket_size():
    from ferry.s3.listing import LISTING_THREADS, PAGES_PER_CALL
    from ferry.s3.compare import COMPARE_THREADS, compare_buckets

    layout = [f"data/{i % 100:02d}/object-{i:07d}.bin" for i in range(100_000)]
    source, target = InMemoryBucket(layout), InMemoryBucket(layout)
    listed = 0
    original = source.list_objects_v2

    def counting(**request):
        nonlocal listed
        page = original(**request)
        listed += len(page.get("Contents", []))
        return page

    source.list_objects_v2 = counting
    compared, most_in_hand = 0, 0
    for comparison in compare_buckets(source, target, "src", "dst", page_size=100):
        compared += len(comparison.source)
        most_in_hand = max(most_in_hand, listed - compared)

    assert compared == 100_000
    bound = (LISTING_THREADS + 2 * COMPARE_THREADS) * PAGES_PER_CALL * 100  # calls in flight, at most
    assert most_in_hand <= bound < 100_000 / 2, f"{most_in_hand:,} keys listed and not yet compared"
