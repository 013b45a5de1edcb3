"""Verify a bucket: keys, sizes and checksums (ETags, or the source ETag recorded at copy time)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.s3.sync import compare_buckets

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

    def summary(self) -> dict:
        result = {"equal": self.equal, "source_objects": self.source_objects, "target_objects": self.target_objects}
        for kind in ("missing", "extra", "changed"):
            keys = getattr(self, kind)
            result[kind] = keys[:MAX_LISTED_KEYS]
            result[f"{kind}_count"] = len(keys)
        result["repaired"] = self.repaired
        return result


def verify_buckets(s3_source, s3_target, source_bucket: str, target_bucket: str, prefix: str = "") -> BucketReport:
    listings = compare_buckets(s3_source, s3_target, source_bucket, target_bucket, prefix)
    plan = listings.plan
    missing = sorted(set(plan.to_copy.index) - set(plan.changed))
    return BucketReport(
        source=source_bucket, target=target_bucket,
        equal=not (missing or plan.changed or plan.to_delete),
        source_objects=len(listings.source), target_objects=len(listings.target),
        missing=missing, extra=plan.to_delete, changed=plan.changed,
    )
