"""Bucket steps: preflight, route events, plan, copy batches of keys, delete extras, drain, verify."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ferry import report as reports
from ferry.aws import shared_client as client
from ferry.config import BucketJob
from ferry.errors import BadInput, Stopped, denied_line
from ferry.s3 import events
from ferry.s3.compare import RangeComparison, compare_buckets
from ferry.s3.copy import copy_objects, delete_extras as delete_absent_keys
from ferry.s3.sync import batches_to_copy
from ferry.s3.verify import BucketReport, ReportBuilder, reconfirm, verify_buckets
from lambdas.s3_apply import keys_in_message, sync_key
from lambdas.s3_compare import Listed
from lambdas.s3_versions import sync_chain
from tasks.common import RETRYING as retrying
from tasks.handles import STOPPING, BucketCounters, LiveSync, bucket_counters_name, stop_on_signals, this_run
from tasks.verify import artifact_key


def s3_clients(job: BucketJob):
    """Listing the source uses the source side; copies and target operations the target side
    (CopyObject is a request to the target bucket that reads the source)."""
    return client(job.source_aws, "s3"), client(job.target_aws, "s3")


@dataclass
class SyncOutcome:
    copied: int  # objects
    bytes_copied: int
    planned: int  # objects found missing or different (some may have been deleted before their copy)
    to_delete: list[str] = field(default_factory=list)  # keys only the target has
    comparison: BucketReport | None = None  # what the listings found, as a verify report (counts, first keys)


@task(name="preflight-bucket", task_run_name="preflight {job.source} -> {job.target}", **retrying)
def preflight_bucket(job: BucketJob) -> None:
    from ferry.s3.preflight import check_bucket_job

    check_bucket_job(job, *s3_clients(job))


@task(name="enable-bucket-events", task_run_name="route events of {job.source} to a queue", **retrying)
def enable_bucket_events(job: BucketJob) -> str:
    """Events from now on land in a durable queue; returns its URL."""
    try:
        url, _, added = events.route_to_queue(client(job.source_aws, "sqs"), client(job.source_aws, "s3"), job.source,
                                              job.target, job.prefix)  # a direction a plan stopped stays stopped
    except ClientError as error:  # a permission IAM's simulator could not check up front: bad input
        if (line := denied_line(error)) is None:
            raise
        if error.operation_name != "CreateQueue":
            line += "; the pair's event queues stay for the rerun"
        raise BadInput(line) from None
    if added:
        get_run_logger().info("bucket %s now also sends object events to Ferry's queue", job.source)
    return url


@task(name="find-bucket-queue", task_run_name="find the event queue of {job.source} -> {job.target}", **retrying)
def find_bucket_queue(job: BucketJob) -> str:
    return events.find_queue(client(job.source_aws, "sqs"), job.source, job.target)


@task(name="deploy-bucket-live-sync", task_run_name="deploy live-sync Lambda {job.source} -> {job.target}",
      **retrying)
def deploy_bucket_live_sync(job: BucketJob, queue_url: str):
    from ferry.s3 import lambda_sync

    sqs = client(job.source_aws, "sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])["Attributes"]
    deployment = lambda_sync.deploy(
        client(job.source_aws, "iam"), client(job.source_aws, "lambda"), client(job.source_aws, "logs"),
        source=job.source, target=job.target, prefix=job.prefix, queue_arn=attributes["QueueArn"],
        dead_letter_queue_arn=json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"],
        all_versions=job.all_versions)
    get_run_logger().info("live-sync Lambda %s consumes the event queue", deployment.function_name)
    return deployment


COPIES_AHEAD = 4  # copy tasks submitted and not finished, at most: two running, two waiting


def wait_for_copies(copying: list, at_most: int) -> None:
    """Block until at most `at_most` copy tasks are unfinished (each earlier one was waited on in turn)."""
    if len(copying) > at_most:
        copying[-at_most - 1].wait()


def counters(job: BucketJob) -> BucketCounters:
    """This flow run's counters of the sync of job.source into job.target."""
    return this_run(bucket_counters_name(job.source, job.target), BucketCounters)


@task(name="sync-objects", task_run_name="compare and copy {job.source} -> {job.target}", **retrying)
def sync_objects(job: BucketJob) -> SyncOutcome:
    """Compare both buckets range by range as the source is listed; every batch of objects found
    missing or different goes to its own copy-objects task (retried alone) while the listing goes
    on. A retry of this task, or a rerun of the flow, compares again and copies what is still needed."""
    source_s3, target_s3 = s3_clients(job)
    found = ReportBuilder(job.source, job.target, job.prefix, keep_keys=False)
    extras: list[str] = []
    progress = counters(job)

    def seen(comparison: RangeComparison) -> None:
        found.add(comparison)
        progress.add(compared=len(comparison.source), to_copy=len(comparison.to_copy))
        extras.extend(comparison.extra)

    copying = []
    comparisons = compare_buckets(source_s3, target_s3, job.source, job.target, job.prefix)
    for batch in batches_to_copy(comparisons, seen):
        if STOPPING.is_set():  # Ctrl-C, SIGTERM: no further batch; a rerun compares again
            raise Stopped(f"the copy of {job.source} into {job.target} stopped after the batches in hand")
        copying.append(copy_batch.submit(job, len(copying), batch))
        wait_for_copies(copying, COPIES_AHEAD)  # the listing goes no further ahead of the copies
    copied = [c.result() for c in copying]
    comparison = found.report()
    get_run_logger().info("%d objects to copy, %d only on the target, of %d in the source",
                          comparison.count("missing") + comparison.count("changed"), len(extras),
                          comparison.source_objects)
    return SyncOutcome(copied=sum(n for n, _ in copied), bytes_copied=sum(b for _, b in copied),
                       planned=comparison.count("missing") + comparison.count("changed"), to_delete=extras,
                       comparison=comparison)


@task(name="copy-objects", task_run_name="copy {job.source} -> {job.target}: batch {number}", **retrying)
def copy_batch(job: BucketJob, number: int, objects: list[Listed]) -> tuple[int, int]:
    """Copy one batch of listed objects server-side; returns (objects, bytes). A retry copies the
    batch again (idempotent); a rerun of the flow compares again and skips what is already there."""
    _, target_s3 = s3_clients(job)
    results = copy_objects(target_s3, job.source, job.target, objects, job.multipart_threshold, job.part_size)
    copied = len(results), sum(r.size for r in results)
    counters(job).add(copied=copied[0], bytes_copied=copied[1])
    return copied


@task(name="delete-extras", task_run_name="delete keys only in {job.target}", **retrying)
def delete_extras(job: BucketJob, keys: list[str]) -> int:
    return delete_absent_keys(s3_clients(job)[1], job.source, job.target, keys, job.multipart_threshold, job.part_size)


@task(name="drain-bucket-events", task_run_name="apply queued events of {job.source}", **retrying)
def drain_bucket_events(job: BucketJob, queue_url: str, idle_seconds: float | None = 1.0,
                        until_caught_up: bool = False, keep_target_changes_since: float | None = None) -> dict:
    """Apply queued events with the live-sync handler's function: HEAD the source, make the target
    match. Messages are deleted only once applied. `keep_target_changes_since`: a cutover's switch
    moment (lambdas/s3_apply.sync_key keeps the service's newer writes to the target). With
    job.all_versions, the key's whole history is made equal (lambdas/s3_versions.sync_chain), until a
    switch: the target's new versions are then the service's, and only current state is applied."""
    _, target_s3 = s3_clients(job)
    histories = job.all_versions and keep_target_changes_since is None

    def apply(body: str) -> None:
        for bucket, key in keys_in_message(body):
            if bucket != job.source or not key.startswith(job.prefix):
                continue
            if histories:
                sync_chain(target_s3, job.source, job.target, key, job.multipart_threshold, job.part_size)
            else:
                sync_key(target_s3, job.source, job.target, key, job.multipart_threshold, keep_target_changes_since)

    sync = this_run(f"bucket-live-sync:{job.source}>{job.target}", LiveSync)
    with stop_on_signals(sync):
        drained = events.drain_queue(client(job.source_aws, "sqs"), queue_url, apply, idle_seconds, stop=sync.stop,
                                     until_caught_up=until_caught_up)
    if until_caught_up and STOPPING.is_set():  # stopped before the queue was caught up: not a proof of anything
        raise Stopped(f"applying the queued events of {job.source} stopped after the batch in hand")
    return drained


@task(name="verify-bucket", task_run_name="verify {job.source} = {job.target}", **retrying)
def verify_bucket(job: BucketJob, repair: bool = False, report_dir: str | None = None, deep: bool = False,
                  compared: BucketReport | None = None, live_sync_queue: str | None = None) -> BucketReport:
    """List and compare both buckets (`deep`: additional checksums of every object), repair if asked,
    publish the report. `compared`: a comparison made since the last change, which is the answer.
    `live_sync_queue`: the service writes on; differences are read again after its queued events
    are applied (ferry/s3/verify.reconfirm), so only those live sync does not explain remain."""
    source_s3, target_s3 = s3_clients(job)
    report = compared or verify_buckets(source_s3, target_s3, job.source, job.target, job.prefix, deep)
    if live_sync_queue and not report.equal:
        drain_bucket_events.fn(job, live_sync_queue, until_caught_up=True)
        report = reconfirm(report, source_s3, target_s3)
    if repair and not report.equal:
        copied = copy_objects(target_s3, job.source, job.target, report.to_copy, job.multipart_threshold,
                              job.part_size)
        deleted = delete_absent_keys(target_s3, job.source, job.target, report.extra, job.multipart_threshold,
                                     job.part_size) if job.delete else 0
        repaired = len(copied) + deleted
        report = verify_buckets(source_s3, target_s3, job.source, job.target, job.prefix, deep)
        if not job.delete:
            report.equal = report.verified(delete=False)
        report.repaired = repaired
    headline = reports.bucket_headline(report)
    create_table_artifact(key=artifact_key("verify", job.source, job.target),
                          table=json.loads(report.by_prefix.to_json(orient="records")), description=headline)
    create_markdown_artifact(key=artifact_key("verify", job.source, job.target, "report"),
                             markdown=reports.bucket_markdown(report), description=headline)
    get_run_logger().info(headline)
    if report_dir:
        for path in reports.write_bucket_report(report, report_dir):
            get_run_logger().info("report written to %s", path)
    return report

