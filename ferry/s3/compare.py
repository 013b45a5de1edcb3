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

from dataclasses import dataclass

import pandas as pd


@dataclass
class BucketPlan:
    to_copy: pd.DataFrame  # source rows missing or different on the target
    unchanged: int
    to_delete: list[str]  # target keys absent from the source (acted on only with --delete)
    changed: list[str]  # keys on both sides that differ


def _side_by_side(source: pd.DataFrame, target: pd.DataFrame) -> pd.DataFrame:
    """Every source key with its size and ETag on both sides (NaN where the target has none)."""
    return source[["size", "etag"]].join(target[["size", "etag"]].add_suffix("_target"), how="left")


def _same_by_listing(pairs: pd.DataFrame) -> pd.Series:
    """Step 1: same size and equal single-part (MD5) ETags."""
    return ((pairs["size"] == pairs["size_target"]) & (pairs["etag"] == pairs["etag_target"])
            & ~pairs["etag"].str.contains("-", regex=False))


def needs_heads(source: pd.DataFrame, target: pd.DataFrame, deep: bool = False) -> list[str]:
    """Keys on both sides, of equal size, that step 1 cannot prove equal (all of them if `deep`)."""
    pairs = _side_by_side(source, target)
    undecided = pairs["size"] == pairs["size_target"]
    if not deep:
        undecided &= ~_same_by_listing(pairs)
    return list(pairs.index[undecided])


def plan_sync(source: pd.DataFrame, target: pd.DataFrame, verdicts: dict[str, bool]) -> BucketPlan:
    """What to copy and what to delete so that `target` matches `source`.

    `verdicts`: key -> same? for the keys step 2 looked at (`needs_heads`); step 1 decides the rest.
    """
    pairs = _side_by_side(source, target)
    decided = pd.Series(verdicts, dtype=bool).reindex(pairs.index)
    same = decided.where(decided.notna(), _same_by_listing(pairs)).astype(bool)
    to_copy = source[~same.to_numpy()]
    changed = sorted(set(to_copy.index) & set(target.index))
    to_delete = sorted(set(target.index) - set(source.index))
    return BucketPlan(to_copy=to_copy, unchanged=int(same.sum()), to_delete=to_delete, changed=changed)
