"""Parallel listing by key ranges, and the rule that decides whether two objects are the same."""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from ferry.s3.listing import list_bucket, split_by_characters
from ferry.s3.sync import compare_buckets
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
    frame = list_bucket(s3, bucket, page_size=page_size)
    return list(frame.index), requests


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
    frame = list_bucket(s3, "prefixed", prefix="logs/2025/", page_size=50)
    assert list(frame.index) == sorted(k for k in NESTED if k.startswith("logs/2025/"))


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

    quick = compare_buckets(s3, s3, "sums-src", "sums-dst").plan
    deep = compare_buckets(s3, s3, "sums-src", "sums-dst", deep=True).plan
    assert quick.changed == ["m"]
    assert deep.changed == ["k", "m"]
    verified = run_ferry("verify", "bucket", "sums-src", "sums-dst", "--deep", "--json")
    assert verified.returncode == 1 and verified.json["changed"] == ["k", "m"]
