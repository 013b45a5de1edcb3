"""Verify a bucket: keys, sizes and checksums (ETags, additional checksums, or the source ETag
recorded at copy time), added up range by range so memory holds the differences, not the bucket."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from ferry.s3.compare import RangeComparison, compare_buckets, same_now
from ferry.s3.listing import PAGE_SIZE
from lambdas.s3_apply import head
from lambdas.s3_compare import Listed
from lambdas.s3_copy import PLAIN, CopySettings

MAX_LISTED_KEYS = 100
KINDS = ("missing", "extra", "changed")
PREFIX_COLUMNS = ["source objects", "source bytes", "target objects", "target bytes", *KINDS]


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
    to_copy: list[Listed] = field(default_factory=list)  # the listed source objects missing or changed
    counts: dict[str, int] = field(default_factory=dict)  # of each kind, when the lists above are cut short
    archived: list[str] = field(default_factory=list)  # source objects archived (not restored), so not copied
    archived_count: int = 0
    archived_bytes: int = 0

    def count(self, kind: str) -> int:
        return self.counts.get(kind, len(getattr(self, kind)))

    def verified(self, delete: bool) -> bool:
        """The migration's verdict: every source object is on the target, the same (none left
        archived), and with `delete` the target has nothing else."""
        return self.equal if delete else not (self.count("missing") or self.count("changed") or self.archived_count)

    def summary(self) -> dict:
        result = {"equal": self.equal, "source_objects": self.source_objects, "target_objects": self.target_objects}
        for kind in KINDS:
            result[kind] = getattr(self, kind)[:MAX_LISTED_KEYS]
            result[f"{kind}_count"] = self.count(kind)
        result["archived"] = self.archived[:MAX_LISTED_KEYS]
        result["archived_count"], result["archived_bytes"] = self.archived_count, self.archived_bytes
        result["repaired"] = self.repaired
        return result


class ReportBuilder:
    """Adds range comparisons up into one BucketReport: exact counts, and a tally per top-level
    prefix. With `keep_keys=False` it keeps only the first keys of each kind and no objects to copy
    (a first sync would otherwise hold every key of the bucket as missing)."""

    def __init__(self, source: str, target: str, prefix: str = "", keep_keys: bool = True):
        self.source, self.target, self.prefix, self.keep_keys = source, target, prefix, keep_keys
        self.objects = {"source": 0, "target": 0}
        self.keys: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.counts = dict.fromkeys(KINDS, 0)
        self.to_copy: list[Listed] = []
        self.archived: list[str] = []
        self.archived_count = self.archived_bytes = 0
        self.by_prefix: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(PREFIX_COLUMNS, 0))

    def add(self, comparison: RangeComparison) -> None:
        self.objects["source"] += len(comparison.source)
        self.objects["target"] += len(comparison.target)
        for side, objects in (("source", comparison.source), ("target", comparison.target)):
            for listed in objects:
                tally = self.by_prefix[top_prefix(listed.key, self.prefix)]
                tally[f"{side} objects"] += 1
                tally[f"{side} bytes"] += listed.size
        for kind in KINDS:
            keys = getattr(comparison, kind)
            self.counts[kind] += len(keys)
            self.keys[kind] += keys if self.keep_keys else keys[:MAX_LISTED_KEYS - len(self.keys[kind])]
            for key in keys:
                self.by_prefix[top_prefix(key, self.prefix)][kind] += 1
        if self.keep_keys:
            self.to_copy += comparison.to_copy
        self.archived_count += len(comparison.archived)
        self.archived_bytes += sum(o.size for o in comparison.archived)
        self.archived += [o.key for o in comparison.archived][:MAX_LISTED_KEYS - len(self.archived)]

    def report(self) -> BucketReport:
        """Equal only if nothing differs and nothing was left archived: a bucket with archived
        objects not on the target is not called equal."""
        return BucketReport(
            source=self.source, target=self.target, equal=not any(self.counts.values()) and not self.archived_count,
            archived=sorted(self.archived), archived_count=self.archived_count, archived_bytes=self.archived_bytes,
            source_objects=self.objects["source"], target_objects=self.objects["target"],
            **{kind: sorted(keys) for kind, keys in self.keys.items()}, by_prefix=prefix_table(self.by_prefix),
            to_copy=self.to_copy, counts=dict(self.counts))


def report_from(comparisons: Iterable[RangeComparison], source: str, target: str, prefix: str = "",
                keep_keys: bool = True) -> BucketReport:
    builder = ReportBuilder(source, target, prefix, keep_keys)
    for comparison in comparisons:
        builder.add(comparison)
    return builder.report()


def verify_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "",
                   deep: bool = False, page_size: int = PAGE_SIZE, settings: CopySettings = PLAIN) -> BucketReport:
    """List and compare both buckets now. `deep`: read every object's additional checksums too;
    `settings`: a target key and Object Lock are part of "the same" (lambdas/s3_compare.py)."""
    comparisons = compare_buckets(s3_source, s3_target, source_bucket, target_bucket, prefix, deep, page_size,
                                  settings)
    return report_from(comparisons, source_bucket, target_bucket, prefix)


MAX_RECONFIRMED = 10_000  # beyond this many differences, a listing's answer stands


def reconfirm(report: BucketReport, s3_source, s3_target, settings: CopySettings = PLAIN,
              deep: bool = False) -> BucketReport:
    """Keep only the differences that are still there now. A listing taken while live sync applies
    the service's changes sees keys written a moment ago as missing or changed; the caller applies
    the queued events first, then each differing key is read again on both sides (HEAD) and judged
    by the rule the comparison used (ferry/s3/compare.same_now, `deep` as it was). A report whose key lists
    were cut short, or that has too many differences to read again, is returned as it is."""
    listed = sum(len(getattr(report, kind)) for kind in KINDS)
    if report.equal or listed > MAX_RECONFIRMED or any(report.count(k) != len(getattr(report, k)) for k in KINDS):
        return report
    still: dict[str, list[str]] = {kind: [] for kind in KINDS}
    to_copy: list[Listed] = []
    for key in sorted({key for kind in KINDS for key in getattr(report, kind)}):
        source, target = head(s3_source, report.source, key), head(s3_target, report.target, key)
        if source is None:
            if target is not None:
                still["extra"].append(key)
            continue
        if not same_now(s3_source, s3_target, report.source, report.target, key, source, target, settings, deep):
            still["missing" if target is None else "changed"].append(key)
            to_copy.append(Listed(key, source["ContentLength"], source["ETag"].strip('"'),
                                  source.get("StorageClass", "STANDARD")))
    by_prefix = report.by_prefix.copy()
    if not by_prefix.empty:
        for kind in KINDS:
            by_prefix[kind] = 0
    report.missing, report.extra, report.changed, report.to_copy = (still["missing"], still["extra"],
                                                                    still["changed"], to_copy)
    report.counts = {kind: len(keys) for kind, keys in still.items()}
    report.equal = not any(report.counts.values()) and not report.archived_count
    report.by_prefix = by_prefix
    return report


def top_prefix(key: str, prefix: str) -> str:
    rest = key[len(prefix):]
    return prefix + (rest.split("/", 1)[0] + "/" if "/" in rest else "")


def prefix_table(by_prefix: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Per top-level prefix, in order: objects and bytes on each side, and the differences found there."""
    if not by_prefix:
        return pd.DataFrame()
    table = pd.DataFrame.from_dict(by_prefix, orient="index", columns=PREFIX_COLUMNS).sort_index()
    table = table.astype("int64").reset_index(names="prefix")
    table["prefix"] = table["prefix"].replace("", "(top level)")
    return table
