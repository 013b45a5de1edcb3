"""Verify a bucket: keys, sizes and checksums (ETags, additional checksums, or the source ETag
recorded at copy time), added up range by range so memory holds the differences, not the bucket."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from ferry.s3.listing import PAGE_SIZE
from ferry.s3.sync import RangeComparison, compare_in_ranges

MAX_LISTED_KEYS = 100
KINDS = ("missing", "extra", "changed")


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
    counts: dict[str, int] = field(default_factory=dict)  # of each kind, when the lists above are cut short

    def count(self, kind: str) -> int:
        return self.counts.get(kind, len(getattr(self, kind)))

    def summary(self) -> dict:
        result = {"equal": self.equal, "source_objects": self.source_objects, "target_objects": self.target_objects}
        for kind in KINDS:
            result[kind] = getattr(self, kind)[:MAX_LISTED_KEYS]
            result[f"{kind}_count"] = self.count(kind)
        result["repaired"] = self.repaired
        return result


class ReportBuilder:
    """Adds range comparisons up into one BucketReport. With `keep_keys=False` it keeps exact counts
    but only the first keys of each kind and no rows to copy (a first sync would otherwise hold
    every key of the bucket as missing)."""

    def __init__(self, source: str, target: str, prefix: str = "", keep_keys: bool = True):
        self.source, self.target, self.prefix, self.keep_keys = source, target, prefix, keep_keys
        self.objects = {"source": 0, "target": 0}
        self.keys: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.counts = dict.fromkeys(KINDS, 0)
        self.to_copy: list[tuple[str, int, str, str]] = []
        self.tables: list[pd.DataFrame] = []

    def add(self, comparison: RangeComparison) -> None:
        plan = comparison.plan
        found = {"missing": sorted(set(plan.to_copy.index) - set(plan.changed)), "extra": plan.to_delete,
                 "changed": plan.changed}
        self.objects["source"] += len(comparison.source)
        self.objects["target"] += len(comparison.target)
        for kind, keys in found.items():
            self.counts[kind] += len(keys)
            self.keys[kind] += keys if self.keep_keys else keys[:MAX_LISTED_KEYS - len(self.keys[kind])]
        if self.keep_keys:
            self.to_copy += listed_rows(plan.to_copy)
        self.tables.append(prefix_table(comparison.source, comparison.target, found["missing"], found["extra"],
                                        found["changed"], self.prefix))
        if len(self.tables) >= 64:  # fold: one row per prefix, however many ranges
            self.tables = [self._by_prefix()]

    def _by_prefix(self) -> pd.DataFrame:
        return pd.concat(self.tables).groupby("prefix", sort=True).sum().reset_index()

    def report(self) -> BucketReport:
        by_prefix = self._by_prefix() if self.tables else pd.DataFrame()
        return BucketReport(
            source=self.source, target=self.target, equal=not any(self.counts.values()),
            source_objects=self.objects["source"], target_objects=self.objects["target"],
            **{kind: sorted(keys) for kind, keys in self.keys.items()}, by_prefix=by_prefix,
            to_copy=self.to_copy, counts=dict(self.counts))


def listed_rows(frame: pd.DataFrame) -> list[tuple[str, int, str, str]]:
    """(key, size, etag, storage class) of listed objects: what a copy needs."""
    return list(zip(frame["key"], frame["size"].astype(int), frame["etag"], frame["storage_class"].astype(str)))


def report_from(comparisons: Iterable[RangeComparison], source: str, target: str, prefix: str = "",
                keep_keys: bool = True) -> BucketReport:
    builder = ReportBuilder(source, target, prefix, keep_keys)
    for comparison in comparisons:
        builder.add(comparison)
    return builder.report()


def verify_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                   deep: bool = False, page_size: int = PAGE_SIZE) -> BucketReport:
    """List and compare both buckets now. `deep`: read every object's additional checksums too."""
    comparisons = compare_in_ranges(s3_source, s3_target, source_bucket, target_bucket, prefix, deep, page_size)
    return report_from(comparisons, source_bucket, target_bucket, prefix)


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
