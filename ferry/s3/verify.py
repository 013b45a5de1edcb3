"""Verify a bucket: keys, sizes and checksums (ETags, or the source ETag recorded at copy time)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ferry.s3.sync import Listings, compare_buckets

MAX_LISTED_KEYS = 100


@dataclass
class BucketReport:
    source: str
    target: str
    equal: bool
    source_objects: int
    target_objects: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    repaired: int = 0
    by_prefix: pd.DataFrame = field(default_factory=pd.DataFrame)  # per top-level prefix, both sides
    to_copy: list[tuple[str, int, str, str]] = field(default_factory=list)  # listed rows of missing + changed

    def summary(self) -> dict:
        result = {"equal": self.equal, "source_objects": self.source_objects, "target_objects": self.target_objects}
        for kind in ("missing", "extra", "changed"):
            keys = getattr(self, kind)
            result[kind] = keys[:MAX_LISTED_KEYS]
            result[f"{kind}_count"] = len(keys)
        result["repaired"] = self.repaired
        return result


def verify_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                   deep: bool = False) -> BucketReport:
    """List and compare both buckets now. `deep`: read every object's additional checksums too."""
    return report_from(compare_buckets(s3_source, s3_target, source_bucket, target_bucket, prefix, deep), prefix)


def report_from(listings: Listings, prefix: str = "") -> BucketReport:
    """The report of one comparison of both listings."""
    plan = listings.plan
    missing = sorted(set(plan.to_copy.index) - set(plan.changed))
    return BucketReport(
        source=listings.source_bucket, target=listings.target_bucket,
        equal=not (missing or plan.changed or plan.to_delete),
        source_objects=len(listings.source), target_objects=len(listings.target),
        missing=missing, extra=plan.to_delete, changed=plan.changed,
        by_prefix=prefix_table(listings.source, listings.target, missing, plan.to_delete, plan.changed, prefix),
        to_copy=list(zip(plan.to_copy["key"], plan.to_copy["size"].astype(int), plan.to_copy["etag"],
                         plan.to_copy["storage_class"])),
    )


def top_prefix(key: str, prefix: str) -> str:
    rest = key[len(prefix):]
    return prefix + (rest.split("/", 1)[0] + "/" if "/" in rest else "")


def prefix_table(source: pd.DataFrame, target: pd.DataFrame, missing: list[str], extra: list[str],
                 changed: list[str], prefix: str = "") -> pd.DataFrame:
    """Per top-level prefix: objects and bytes on each side, and the differences found there."""
    def side(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        grouped = frame.assign(prefix=[top_prefix(k, prefix) for k in frame["key"]]).groupby("prefix")["size"]
        return pd.DataFrame({f"{name} objects": grouped.count(), f"{name} bytes": grouped.sum()})

    def counted(keys: list[str], name: str) -> pd.Series:
        return pd.Series([top_prefix(k, prefix) for k in keys], dtype="object").value_counts().rename(name)

    table = side(source, "source").join(side(target, "target"), how="outer")
    for keys, name in ((missing, "missing"), (extra, "extra"), (changed, "changed")):
        table = table.join(counted(keys, name), how="outer")
    table = table.fillna(0).astype("int64").reset_index(names="prefix")
    table["prefix"] = table["prefix"].replace("", "(top level)")
    return table
