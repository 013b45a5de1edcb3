"""The one place that decides whether two objects are the same (rclone's lesson).

Same size, and the strongest evidence both sides have: equal ETags when they are comparable (both
single-part, so an MD5 of the content), else the source ETag Ferry recorded in the target's metadata
when it copied the object (a multipart copy gets a different ETag than its source). Timestamps are
never used: a copy is always newer than its source.
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


def comparable(etag: str) -> bool:
    """A multipart ETag ('...-N') is not an MD5 of the content and cannot be compared across uploads."""
    return "-" not in etag


def plan_sync(source: pd.DataFrame, target: pd.DataFrame, recorded: dict[str, str]) -> BucketPlan:
    """What to copy and what to delete so that `target` matches `source`.

    `recorded`: key -> the source ETag recorded on the target object at copy time (multipart copies).
    """
    both = source.join(target[["size", "etag"]], how="left", rsuffix="_target")
    present = both["etag_target"].notna()

    def same(row) -> bool:
        if row["size"] != row["size_target"]:
            return False
        if comparable(row["etag"]) and comparable(row["etag_target"]):
            return row["etag"] == row["etag_target"]
        return recorded.get(row["key"]) == row["etag"]

    same_mask = pd.Series(False, index=both.index)
    if present.any():
        same_mask[present] = both[present].apply(same, axis=1)
    to_copy = source[~same_mask.reindex(source.index, fill_value=False)]
    changed = sorted(set(to_copy.index) & set(target.index))
    to_delete = sorted(set(target.index) - set(source.index))
    return BucketPlan(to_copy=to_copy, unchanged=int(same_mask.sum()), to_delete=to_delete, changed=changed)
