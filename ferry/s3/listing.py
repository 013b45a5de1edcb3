"""List a bucket in parallel: one worker per top-level prefix, so a huge bucket is listed by many.

The listing is a pandas DataFrame (key, size, etag, last_modified, storage_class), the form in which
the two sides are compared.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

COLUMNS = ["key", "size", "etag", "storage_class"]
LISTING_THREADS = 16


def _list(s3, bucket: str, prefix: str, delimiter: str | None = None) -> tuple[list[dict], list[str]]:
    rows, prefixes = [], []
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        rows += [{"key": o["Key"], "size": o["Size"], "etag": o["ETag"].strip('"'),
                  "storage_class": o.get("StorageClass", "STANDARD")} for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return rows, prefixes


def list_bucket(s3, bucket: str, prefix: str = "") -> pd.DataFrame:
    """Every object under `prefix`: the top level with a delimiter, then each sub-prefix in parallel."""
    rows, prefixes = _list(s3, bucket, prefix, delimiter="/")
    if prefixes:
        with ThreadPoolExecutor(min(LISTING_THREADS, len(prefixes))) as pool:
            for sub_rows, _ in pool.map(lambda p: _list(s3, bucket, p), prefixes):
                rows += sub_rows
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"size": "int64"}).set_index("key", drop=False).sort_index()
