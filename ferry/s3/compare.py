"""Which objects differ between two bucket listings (the tables), and which need a closer look.

The rule for one pair of objects lives in lambdas/s3_compare.py (the live-sync handler uses it too).
Applied to whole listings, cheapest first:
1. From the listings, no extra request: different sizes differ; equal ETags that are both MD5s of the
   content (single-part uploads and copies) are the same. That settles almost every unchanged object.
2. Every other pair on both sides (multipart ETags, or MD5-looking ETags that differ, which SSE-KMS
   objects have even for equal bytes) is HEADed on both sides and decided by that rule: additional
   checksums, then real MD5s, then the source ETag Ferry recorded at copy time.
`deep=True` sends every same-size pair to step 2, so additional checksums are read for all objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass
class BucketPlan:
    to_copy: pd.DataFrame  # source rows missing or different on the target
    to_delete: list[str]  # target keys absent from the source (acted on only with --delete)
    changed: list[str]  # keys on both sides that differ


def plan_sync(source: pd.DataFrame, target: pd.DataFrame, look_closer: Callable[[list[str]], dict[str, bool]],
              deep: bool = False) -> BucketPlan:
    """What to copy and what to delete so that `target` matches `source`.

    Step 1 decides from the listings; `look_closer(keys)` (step 2: HEADs on both sides) returns
    key -> same? for the same-size pairs step 1 cannot prove equal, or for all of them if `deep`.
    """
    pairs = source[["size", "etag"]].join(target[["size", "etag"]].add_suffix("_target"), how="left")
    same_size = pairs["size"] == pairs["size_target"]
    same_md5 = (pairs["etag"] == pairs["etag_target"]) & ~pairs["etag"].str.contains("-", regex=False)
    by_listing = same_size & same_md5
    undecided = same_size if deep else same_size & ~by_listing
    decided = pd.Series(look_closer(list(pairs.index[undecided])), dtype=bool).reindex(pairs.index)
    same = decided.where(decided.notna(), by_listing).astype(bool)
    to_copy = source[~same.to_numpy()]
    changed = sorted(set(to_copy.index) & set(target.index))
    to_delete = sorted(set(target.index) - set(source.index))
    return BucketPlan(to_copy=to_copy, to_delete=to_delete, changed=changed)
