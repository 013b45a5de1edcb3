"""Bucket steps of `--all-versions`: remember the mode on the pair's queue, sync every key's history,
verify histories (with the version-ID map in --report-dir). The logic is ferry/s3/versions.py's."""

from __future__ import annotations

import os

from prefect import get_run_logger, task

from ferry import report as reports
from ferry.aws import shared_client as client
from ferry.config import BucketJob
from ferry.s3 import versions
from ferry.s3.versions import HistoryReport, VersionMap, VersionsOutcome
from lambdas.s3_copy import CopySettings
from tasks.common import RETRYING as retrying
from tasks.s3 import counters, drain_bucket_events, publish_bucket_report, s3_clients, settings_for


@task(name="remember-bucket-mode", task_run_name="remember the mode of {job.source} -> {job.target}", **retrying)
def remember_versions_mode(job: BucketJob, queue_url: str) -> None:
    """How this migration copies (histories or current state, the target key), on the pair's queue:
    `ferry sync bucket` and `ferry finish bucket` apply events the same way."""
    from ferry.s3 import events

    sqs = client(job.source_aws, "sqs")
    versions.remember_all_versions(sqs, queue_url, job.all_versions)
    events.remember_target_key(sqs, queue_url, job.target_kms_key)


@task(name="recorded-bucket-mode", task_run_name="read the mode of {job.source} -> {job.target}", **retrying)
def recorded_versions_mode(job: BucketJob, queue_url: str) -> bool:
    return bool(versions.recorded_all_versions(client(job.source_aws, "sqs"), queue_url))


@task(name="sync-versions", task_run_name="copy every version {job.source} -> {job.target}", **retrying)
def sync_object_versions(job: BucketJob, settings: CopySettings | None = None) -> VersionsOutcome:
    """Every key's history made equal, key by key as both sides are listed. A retry, or a rerun of
    the flow, compares the histories again and appends only what is still missing."""
    source_s3, target_s3 = s3_clients(job)
    progress = counters(job)
    outcome = versions.sync_versions(source_s3, target_s3, job.source, job.target, job.prefix, job.delete,
                                     job.multipart_threshold, job.part_size, progress=progress.add,
                                     settings=settings_for(job, settings))
    get_run_logger().info("%d keys with a history to copy: %d versions copied, %d delete markers made, %d target "
                          "entries out of place deleted", outcome.planned, outcome.versions, outcome.markers,
                          outcome.removed)
    return outcome


@task(name="verify-versions", task_run_name="verify histories {job.source} = {job.target}", **retrying)
def verify_object_versions(job: BucketJob, repair: bool = False, report_dir: str | None = None, deep: bool = False,
                           compared: HistoryReport | None = None, live_sync_queue: str | None = None,
                           settings: CopySettings | None = None) -> HistoryReport:
    """Every key's history compared (ferry/s3/versions.verify_versions), repaired if asked (the sync
    again, then compared again), published. `compared`: the sync's own comparison, when nothing
    changed since. `live_sync_queue`: differences are read again after its queued events are
    applied. With `report_dir`, the version-ID map is written beside the report as it is found.
    `deep`: every pair of versions HEADed."""
    source_s3, target_s3 = s3_clients(job)
    settings = settings_for(job, settings)
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
    mapping = VersionMap(os.path.join(report_dir, f".ferry-versions-{os.getpid()}.csv")) if report_dir else None

    def compare() -> HistoryReport:
        return versions.verify_versions(source_s3, target_s3, job.source, job.target, job.prefix, mapped=mapping,
                                        deep=deep, settings=settings)

    try:
        report = compared if compared is not None and mapping is None else compare()
        if live_sync_queue and not report.equal:
            drain_bucket_events.fn(job, live_sync_queue, until_caught_up=True, settings=settings)
            report = versions.reconfirm_histories(report, source_s3, target_s3, settings)
        if repair and not report.equal:
            synced = versions.sync_versions(source_s3, target_s3, job.source, job.target, job.prefix, job.delete,
                                            job.multipart_threshold, job.part_size, settings=settings)
            if mapping:
                mapping.restart()  # the map of the histories as repaired
            report = compare()
            if not job.delete:
                report.equal = report.verified(delete=False)
            report.repaired = synced.planned
    finally:
        if mapping:
            mapping.close()
    headline = reports.bucket_headline(report) + (f"; {report.version_map:,} versions and delete markers mapped "
                                                  f"({report.source_versions:,} versions in the source)")
    paths = publish_bucket_report(job, report, headline, report_dir)
    if report_dir:
        named = paths[1].with_name(paths[1].name.replace("-differences.csv", "-versions.csv"))
        mapping.path.replace(named)
        for path in paths + [named]:
            get_run_logger().info("report written to %s", path)
    return report
