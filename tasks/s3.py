"""Bucket steps: preflight, what copies carry, route events, compare and copy batches of keys, delete
extras, restore archived objects, drain, verify."""

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
from ferry.s3 import events, routes
from ferry.s3.compare import RangeComparison, compare_buckets
from ferry.s3.copy import copy_objects, delete_extras as delete_absent_keys
from ferry.s3.restore import RestoreOutcome, restore_timing, start_restores, wait_and_copy
from ferry.s3.sync import batches_to_copy
from ferry.s3.verify import BucketReport, ReportBuilder, reconfirm, verify_buckets
from lambdas.s3_apply import apply_batch, sync_history, sync_key
from lambdas.s3_compare import Listed
from lambdas.s3_copy import CopySettings
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
    archived: list[Listed] = field(default_factory=list)  # with job.restore_days: every archived object found


def settings_for(job: BucketJob, settings: CopySettings | None = None) -> CopySettings:
    """`settings` as the flow read them, or read now (a task called on its own, as the cutover does)."""
    from ferry.s3.preflight import copy_settings as read

    if settings is not None:
        return settings
    return read(job, *s3_clients(job), client(job.target_aws, "kms") if job.target_kms_key else None)


@task(name="preflight-bucket", task_run_name="preflight {job.source} -> {job.target}", **retrying)
def preflight_bucket(job: BucketJob) -> CopySettings:
    """Every read-only check; returns what the copies carry (the target key's ARN, Object Lock)."""
    from ferry.s3.preflight import check_bucket_job

    return check_bucket_job(job, *s3_clients(job), client(job.target_aws, "kms") if job.target_kms_key else None)


@task(name="read-copy-settings", task_run_name="encryption and object lock of {job.source} -> {job.target}",
      **retrying)
def read_copy_settings(job: BucketJob) -> CopySettings:
    """The target key's ARN and whether objects carry Object Lock settings (reads only; a key that
    cannot be used, or a source with Object Lock and a target without, is BadInput)."""
    return settings_for(job)


@task(name="enable-bucket-events", task_run_name="route events of {job.source} to a queue", **retrying)
def enable_bucket_events(job: BucketJob) -> str:
    """Events from now on land in a durable queue; returns its URL."""
    try:  # a direction a plan stopped stays stopped
        url, _, route = events.route_to_queue(client(job.source_aws, "sqs"), client(job.source_aws, "s3"),
                                              client(job.source_aws, "events"), job.source, job.target, job.prefix,
                                              job.events)
    except ClientError as error:  # a permission IAM's simulator could not check up front: bad input
        if (line := denied_line(error)) is None:
            raise
        if error.operation_name != "CreateQueue":
            line += "; the pair's event queues stay for the rerun"
        raise BadInput(line) from None
    if route.added:
        get_run_logger().info("bucket %s now also sends object events to Ferry's queue (%s)", job.source,
                              "through EventBridge" if route.way == "eventbridge" else "a notification entry")
    if route.turned_on_eventbridge:
        get_run_logger().warning("turned on EventBridge delivery for bucket %s (turned off again when this pair's "
                                 "route is removed, if nothing else uses it)", job.source)
    return url


@task(name="find-bucket-queue", task_run_name="find the event queue of {job.source} -> {job.target}", **retrying)
def find_bucket_queue(job: BucketJob) -> str:
    return events.find_queue(client(job.source_aws, "sqs"), job.source, job.target)


@task(name="deploy-bucket-live-sync", task_run_name="deploy live-sync Lambda {job.source} -> {job.target}",
      **retrying)
def deploy_bucket_live_sync(job: BucketJob, queue_url: str, settings: CopySettings | None = None):
    from ferry.s3 import lambda_sync

    sqs = client(job.source_aws, "sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])["Attributes"]
    deployment = lambda_sync.deploy(
        client(job.source_aws, "iam"), client(job.source_aws, "lambda"), client(job.source_aws, "logs"),
        source=job.source, target=job.target, prefix=job.prefix, queue_arn=attributes["QueueArn"],
        dead_letter_queue_arn=json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"],
        settings=settings_for(job, settings), all_versions=job.all_versions)
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
def sync_objects(job: BucketJob, settings: CopySettings | None = None) -> SyncOutcome:
    """Compare both buckets range by range as the source is listed; every batch of objects found
    missing or different goes to its own copy-objects task (retried alone) while the listing goes
    on. A retry of this task, or a rerun of the flow, compares again and copies what is still needed.
    With job.restore_days, the archived objects found are kept for restore_archived (the
    differences only, as the comparison's lists are)."""
    settings = settings_for(job, settings)
    source_s3, target_s3 = s3_clients(job)
    found = ReportBuilder(job.source, job.target, job.prefix, keep_keys=False)
    extras: list[str] = []
    archived: list[Listed] = []
    progress = counters(job)

    def seen(comparison: RangeComparison) -> None:
        found.add(comparison)
        progress.add(compared=len(comparison.source), to_copy=len(comparison.to_copy))
        extras.extend(comparison.extra)
        if job.restore_days:
            archived.extend(comparison.archived)

    copying = []
    comparisons = compare_buckets(source_s3, target_s3, job.source, job.target, job.prefix, settings=settings)
    for batch in batches_to_copy(comparisons, seen):
        if STOPPING.is_set():  # Ctrl-C, SIGTERM: no further batch; a rerun compares again
            raise Stopped(f"the copy of {job.source} into {job.target} stopped after the batches in hand")
        copying.append(copy_batch.submit(job, len(copying), batch, settings))
        wait_for_copies(copying, COPIES_AHEAD)  # the listing goes no further ahead of the copies
    copied = [c.result() for c in copying]
    comparison = found.report()
    get_run_logger().info("%d objects to copy, %d only on the target, of %d in the source",
                          comparison.count("missing") + comparison.count("changed"), len(extras),
                          comparison.source_objects)
    return SyncOutcome(copied=sum(n for n, _ in copied), bytes_copied=sum(b for _, b in copied),
                       planned=comparison.count("missing") + comparison.count("changed"), to_delete=extras,
                       comparison=comparison, archived=archived)


@task(name="copy-objects", task_run_name="copy {job.source} -> {job.target}: batch {number}", **retrying)
def copy_batch(job: BucketJob, number: int, objects: list[Listed], settings: CopySettings | None = None
               ) -> tuple[int, int]:
    """Copy one batch of listed objects server-side; returns (objects, bytes). A retry copies the
    batch again (idempotent); a rerun of the flow compares again and skips what is already there."""
    _, target_s3 = s3_clients(job)
    results = copy_objects(target_s3, job.source, job.target, objects, job.multipart_threshold, job.part_size,
                           settings=settings_for(job, settings))
    copied = len(results), sum(r.size for r in results)
    counters(job).add(copied=copied[0], bytes_copied=copied[1])
    return copied


@task(name="delete-extras", task_run_name="delete keys only in {job.target}", **retrying)
def delete_extras(job: BucketJob, keys: list[str], settings: CopySettings | None = None) -> int:
    return delete_absent_keys(s3_clients(job)[1], job.source, job.target, keys, job.multipart_threshold, job.part_size,
                              settings_for(job, settings))


@task(name="restore-archived", task_run_name="restore archived objects of {job.source} and copy them", **retrying)
def restore_archived(job: BucketJob, objects: list[Listed], settings: CopySettings | None = None) -> RestoreOutcome:
    """Start a restore of each archived object the bulk sync found (`--restore DAYS`), then wait,
    copying each as its restore finishes (ferry/s3/restore.py). A retry or a rerun asks again, which
    S3 answers with RestoreAlreadyInProgress for those under way: nothing is restored twice."""
    settings = settings_for(job, settings)
    source_s3, target_s3 = s3_clients(job)
    restoring = start_restores(source_s3, job.source, objects, job.restore_days, job.tier)
    get_run_logger().info("%d archived objects restoring (%s tier, %d days); copied as each is restored",
                          len(restoring), job.tier, job.restore_days)

    def copy(ready: list[Listed]) -> list:
        results = copy_objects(target_s3, job.source, job.target, ready, job.multipart_threshold, job.part_size,
                               settings=settings)
        counters(job).add(copied=len(results), bytes_copied=sum(r.size for r in results))
        return results

    outcome = wait_and_copy(source_s3, job.source, restoring, copy, restore_timing())
    get_run_logger().info("%d restored objects copied, %d restores still under way", outcome.copied,
                          len(outcome.pending))
    return outcome


@task(name="drain-bucket-events", task_run_name="apply queued events of {job.source}", **retrying)
def drain_bucket_events(job: BucketJob, queue_url: str, idle_seconds: float | None = 1.0,
                        until_caught_up: bool = False, keep_target_changes_since: float | None = None,
                        settings: CopySettings | None = None) -> dict:
    """Apply queued events with the live-sync handler's function: HEAD the source, make the target
    match. Messages are deleted only once applied. `keep_target_changes_since`: a cutover's switch
    moment (lambdas/s3_apply.sync_key keeps the service's newer writes to the target). With
    job.all_versions, the key's whole history is made equal (lambdas/s3_versions.sync_chain), until a
    switch: the target's new versions are then the service's, and only current state is applied."""
    settings = settings_for(job, settings)
    _, target_s3 = s3_clients(job)
    histories = job.all_versions and keep_target_changes_since is None

    def apply_key(bucket: str, key: str, kinds: list[str]) -> None:
        if histories:
            sync_history(target_s3, job.source, job.target, key, kinds, settings, job.multipart_threshold,
                         job.part_size)
            return
        for kind in kinds:
            sync_key(target_s3, job.source, job.target, key, job.multipart_threshold, keep_target_changes_since,
                     kind, settings)

    def apply(bodies: list[str]) -> list[bool]:
        return apply_batch(bodies, apply_key, lambda bucket, key: bucket == job.source and key.startswith(job.prefix))

    sync = this_run(f"bucket-live-sync:{job.source}>{job.target}", LiveSync)
    progress = counters(job)
    with stop_on_signals(sync):
        drained = events.drain_queue(client(job.source_aws, "sqs"), queue_url, apply, idle_seconds, stop=sync.stop,
                                     until_caught_up=until_caught_up, progress=progress.applied)
    if until_caught_up and STOPPING.is_set():  # stopped before the queue was caught up: not a proof of anything
        raise Stopped(f"applying the queued events of {job.source} stopped after the batch in hand")
    return drained


@task(name="remove-bucket-route", task_run_name="stop routing events of {job.source} to {job.target}'s queue",
      **retrying)
def remove_bucket_route(job: BucketJob, queue_url: str) -> routes.Unrouted:
    """Remove only what the pair's routing added (ferry/s3/routes.py unroute)."""
    sqs = client(job.source_aws, "sqs")
    unrouted = routes.unroute(client(job.source_aws, "s3"), client(job.source_aws, "events"), job.source, job.target,
                              events.queue_arn(sqs, queue_url))
    for line in unrouted.removed:
        get_run_logger().info("removed %s", line)
    return unrouted


@task(name="remove-bucket-live-sync", task_run_name="remove live-sync Lambda {job.source} -> {job.target}",
      **retrying)
def remove_bucket_live_sync(job: BucketJob, queue_url: str) -> list[str]:
    from ferry.s3 import lambda_sync

    return lambda_sync.remove(client(job.source_aws, "iam"), client(job.source_aws, "lambda"), source=job.source,
                              target=job.target, queue_arn=events.queue_arn(client(job.source_aws, "sqs"), queue_url))


@task(name="delete-bucket-queues", task_run_name="delete the queues of {job.source} -> {job.target}", **retrying)
def delete_bucket_queues(job: BucketJob) -> tuple[list[str], list[str], int]:
    return events.delete_queues(client(job.source_aws, "sqs"), job.source, job.target)


@task(name="verify-bucket", task_run_name="verify {job.source} = {job.target}", **retrying)
def verify_bucket(job: BucketJob, repair: bool = False, report_dir: str | None = None, deep: bool = False,
                  compared: BucketReport | None = None, live_sync_queue: str | None = None,
                  settings: CopySettings | None = None) -> BucketReport:
    """List and compare both buckets (`deep`: additional checksums of every object), repair if asked,
    publish the report. `compared`: a comparison made since the last change, which is the answer.
    `live_sync_queue`: the service writes on; differences are read again after its queued events
    are applied (ferry/s3/verify.reconfirm), so only those live sync does not explain remain. A
    target key (job.target_kms_key) makes copies not under it differences, which --repair re-encrypts."""
    settings = settings_for(job, settings)
    source_s3, target_s3 = s3_clients(job)
    report = compared or verify_buckets(source_s3, target_s3, job.source, job.target, job.prefix, deep,
                                        settings=settings)
    if live_sync_queue and not report.equal:
        drain_bucket_events.fn(job, live_sync_queue, until_caught_up=True, settings=settings)
        report = reconfirm(report, source_s3, target_s3, settings, deep)
    if repair and not report.equal:
        copied = copy_objects(target_s3, job.source, job.target, report.to_copy, job.multipart_threshold,
                              job.part_size, settings=settings)
        deleted = delete_absent_keys(target_s3, job.source, job.target, report.extra, job.multipart_threshold,
                                     job.part_size, settings) if job.delete else 0
        repaired = len(copied) + deleted
        report = verify_buckets(source_s3, target_s3, job.source, job.target, job.prefix, deep, settings=settings)
        if not job.delete:
            report.equal = report.verified(delete=False)
        report.repaired = repaired
    paths = publish_bucket_report(job, report, reports.bucket_headline(report), report_dir)
    for path in paths:
        get_run_logger().info("report written to %s", path)
    return report


def publish_bucket_report(job: BucketJob, report, headline: str, report_dir: str | None) -> list:
    """A bucket verification's artifacts in Prefect (a table per prefix, the report), its headline in
    the log, and with `report_dir` its CSV and Markdown files (their paths returned)."""
    create_table_artifact(key=artifact_key("verify", job.source, job.target),
                          table=json.loads(report.by_prefix.to_json(orient="records")), description=headline)
    create_markdown_artifact(key=artifact_key("verify", job.source, job.target, "report"),
                             markdown=reports.bucket_markdown(report), description=headline)
    get_run_logger().info(headline)
    return reports.write_bucket_report(report, report_dir) if report_dir else []

