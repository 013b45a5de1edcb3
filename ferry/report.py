"""Verification reports people can read: pandas tables written as CSV and Markdown.

The same frames feed the Prefect artifacts (tasks/verify.py) and the files in --report-dir. Keys are
shown in DynamoDB JSON (binary values base64-encoded, as the AWS CLI shows them); item contents are
never included: a report names which items differ, not what they hold.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ferry.dynamo.verify import BUCKETS, VerifyReport, bucket_of
from lambdas.dynamo_apply import json_form

REPORT_GROUPS = 16  # rows of the per-range table: each covers BUCKETS / REPORT_GROUPS key-hash buckets
MAX_LISTED_KEYS = 100


dynamodb_json = json_form  # a key (or any attribute value) as DynamoDB JSON: bytes as base64 text


def ranges_frame(report: VerifyReport) -> pd.DataFrame:
    """Per range of key-hash buckets: counts and digests on both sides, and what differed there."""
    if report.source_buckets is None:
        return pd.DataFrame()
    per_group = BUCKETS // REPORT_GROUPS
    found = pd.Series([bucket_of(d.key) // per_group for d in report.differences], dtype="int64").value_counts()
    rows = []
    for group in range(REPORT_GROUPS):
        buckets = range(group * per_group, (group + 1) * per_group)
        source, target = report.source_buckets.total(buckets), report.target_buckets.total(buckets)
        rows.append({
            "key range": f"{buckets.start:04d}-{buckets.stop - 1:04d}",
            "source items": source.items, "source digest": source.hex,
            "target items": target.items, "target digest": target.hex,
            "equal": source == target, "differences": int(found.get(group, 0)),
        })
    return pd.DataFrame(rows)


def differences_frame(report: VerifyReport) -> pd.DataFrame:
    return pd.DataFrame(
        [{"kind": d.kind, "key": json.dumps(dynamodb_json(d.key), sort_keys=True)} for d in report.differences],
        columns=["kind", "key"],
    )


def counts(report: VerifyReport) -> dict[str, int]:
    return {kind: len(report.keys(kind)) for kind in ("missing", "extra", "changed")}


def summary(report: VerifyReport) -> dict:
    """The JSON result of `ferry verify table` (lists of keys capped, with counts)."""
    result = {
        "equal": report.equal,
        "source_items": report.source_items,
        "target_items": report.target_items,
        "source_checksum": report.source_checksum,
        "target_checksum": report.target_checksum,
    }
    for kind, count in counts(report).items():
        result[kind] = [dynamodb_json(k) for k in report.keys(kind)[:MAX_LISTED_KEYS]]
        result[f"{kind}_count"] = count
    result["repaired"] = report.repaired
    result["remaining_after_repair"] = report.remaining_after_repair
    result["dismissed_in_flight"] = report.dismissed
    result["expired"] = {"source": report.source_expired, "target": report.target_expired}  # TTL passed: left out
    result["sampled"] = report.sampled
    if report.sampled is not None:
        result["sampled_items"] = report.sampled_items
    return result


def headline(report: VerifyReport) -> str:
    found = counts(report)
    if report.sampled is not None:
        scope = f"a {report.sampled:.1%} sample ({report.sampled_items:,} keys) of "
    else:
        scope = ""
    state = "EQUAL" if report.equal else "DIFFERENT"
    line = (f"{state}: {scope}{report.source} ({report.source_items:,} items) vs {report.target} "
            f"({report.target_items:,} items); {found['missing']} missing, {found['extra']} extra, "
            f"{found['changed']} changed")
    if report.dismissed:
        line += f"; {report.dismissed} candidates dismissed (changed in flight, equal on re-read)"
    if report.source_expired or report.target_expired:
        line += (f"; {report.source_expired} source and {report.target_expired} target items past their TTL "
                 "left out (DynamoDB deletes them)")
    if report.repaired:
        line += f"; {report.repaired} repaired, {report.remaining_after_repair} remaining"
    return line


def _markdown(title: str, line: str, breakdown_title: str, breakdown: pd.DataFrame,
              differences: pd.DataFrame) -> str:
    """The layout every verification report shares: headline, breakdown table, differences."""
    parts = [f"# {title}", "", line, ""]
    if not breakdown.empty:
        parts += [f"## {breakdown_title}", "", breakdown.to_markdown(index=False), ""]
    if not differences.empty:
        listed = differences.head(MAX_LISTED_KEYS)
        parts += [f"## Differences ({len(differences)}, first {len(listed)} listed)", "",
                  listed.to_markdown(index=False), ""]
    return "\n".join(parts)


def markdown(report: VerifyReport) -> str:
    return _markdown(f"Verification of {report.source} -> {report.target}", headline(report),
                     "By key range", ranges_frame(report), differences_frame(report))


def bucket_headline(report) -> str:
    state = "EQUAL" if report.equal else "DIFFERENT"
    line = (f"{state}: {report.source} ({report.source_objects:,} objects) vs {report.target} "
            f"({report.target_objects:,} objects); {report.count('missing')} missing, {report.count('extra')} extra, "
            f"{report.count('changed')} changed")
    if report.archived_count:  # not copied: the bucket is not called equal while they are missing
        line += (f"; {report.archived_count} archived ({report.archived_bytes:,} bytes: GLACIER or DEEP_ARCHIVE, "
                 "not restored) not copied")
    return line + (f"; {report.repaired} repaired" if report.repaired else "")


def bucket_differences_frame(report) -> pd.DataFrame:
    rows = [{"kind": kind, "key": key} for kind in ("missing", "extra", "changed", "archived")
            for key in getattr(report, kind)]
    return pd.DataFrame(rows, columns=["kind", "key"])


def bucket_markdown(report) -> str:
    return _markdown(f"Verification of s3://{report.source} -> s3://{report.target}", bucket_headline(report),
                     "By prefix", report.by_prefix, bucket_differences_frame(report))


def write_bucket_report(report, directory: str | Path) -> list[Path]:
    """CSV and Markdown files for one bucket verification; returns their paths."""
    stem = _stem(report, directory)
    paths = [stem.with_suffix(".md"), stem.with_name(stem.name + "-differences.csv"),
             stem.with_name(stem.name + "-prefixes.csv")]
    paths[0].write_text(bucket_markdown(report))
    bucket_differences_frame(report).to_csv(paths[1], index=False)
    report.by_prefix.to_csv(paths[2], index=False)
    return paths


def _stem(report, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return directory / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"verify-{report.source}-{report.target}-{stamp}")


def write_report(report: VerifyReport, directory: str | Path) -> list[Path]:
    """Write CSV and Markdown files for one verification; returns their paths."""
    stem = _stem(report, directory)
    paths = [stem.with_suffix(".md"), stem.with_name(stem.name + "-differences.csv")]
    paths[0].write_text(markdown(report))
    differences_frame(report).to_csv(paths[1], index=False)
    ranges = ranges_frame(report)
    if not ranges.empty:
        paths.append(stem.with_name(stem.name + "-ranges.csv"))
        ranges.to_csv(paths[-1], index=False)
    return paths
