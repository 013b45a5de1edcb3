"""The bucket commands: `ferry bucket`, `ferry verify bucket`, `ferry sync bucket`."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ferry.aws import check_sides, client
from ferry.cli import render
from ferry.cli.options import (DEFAULT_LIVE_SYNC, JsonOutput, LiveSync, ReportDir, Verbose, build_job, flow_arguments,
                               print_json, use_prefect, with_aws_sides)
from ferry.config import AwsSide, BucketJob
from ferry.errors import BadInput
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE

EXIT_OK, EXIT_DIFFERENT = 0, 1

SourceBucket = Annotated[str, typer.Argument(metavar="SOURCE", help="Source bucket.")]
TargetBucket = Annotated[str, typer.Argument(metavar="TARGET", help="Target bucket.")]
Prefix = Annotated[str, typer.Option("--prefix", help="Only keys under this prefix.")]
MultipartThreshold = Annotated[int, typer.Option("--multipart-threshold", help="Bytes above which copies are multipart.")]
PartSize = Annotated[int, typer.Option("--part-size", help="Bytes per part of a multipart copy.")]
Events = Annotated[str, typer.Option("--events", help="How the source's events reach Ferry: 'auto' (default: a "
                                     "notification entry unless one would overlap an existing consumer's, then "
                                     "EventBridge), 'notification' or 'eventbridge'.")]
TargetKmsKey = Annotated[Optional[str], typer.Option(
    "--target-kms-key", metavar="KEY", help="Encrypt every copy with this KMS key (id, alias/NAME or ARN, in the "
    "target's account); copies under another key count as different.")]
Restore = Annotated[Optional[int], typer.Option(
    "--restore", metavar="DAYS", help="Restore archived objects (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering archive "
    "tiers) for DAYS days, wait, and copy each once restored.")]
RestoreTierOption = Annotated[Optional[str], typer.Option(
    "--restore-tier", help="With --restore: 'Bulk' (default, cheapest, up to 48 h) or 'Standard' (hours).")]
AllVersions = Annotated[bool, typer.Option("--all-versions", help="Every version and delete marker of every key, in "
                                           "order (the target's versioning must be Enabled).")]


def connect(job: BucketJob, preflight: bool = True) -> None:
    """Both sides have a region and credentials; with `preflight`, every read-only check of a bucket
    migration (buckets reachable, no clash with existing event notifications) has passed; either
    way, the target key (if any) can be used, and a source with Object Lock has a target with it."""
    from ferry.s3.preflight import check_bucket_job, copy_settings, empty_prefix_warning, require_bucket

    from ferry.s3.events import settle_seconds

    settle_seconds()  # FERRY_EVENT_SETTLE_SECONDS checked before anything runs
    check_sides(job.source_aws, job.target_aws)
    source_s3, target_s3 = client(job.source_aws, "s3"), client(job.target_aws, "s3")
    if preflight:
        check_bucket_job(job, source_s3, target_s3)
        if warning := empty_prefix_warning(job, source_s3):
            render.err.print(f"ferry: warning: {warning}", highlight=False, markup=False, soft_wrap=True)
    else:
        require_bucket(source_s3, job.source, "source")
        require_bucket(target_s3, job.target, "target")
        copy_settings(job, source_s3, target_s3)


def as_migrated(source: str, target: str, source_aws: AwsSide, target_aws: AwsSide, prefix: str | None = None,
                target_kms_key: str | None = None, all_versions: bool | None = None,
                held_too: bool = False) -> BucketJob:
    """The job of a pair's live sync as its migration was made (the pair's queue remembers its
    prefix, target key and mode; options given must agree): set up, not stopped by a plan (unless
    `held_too`: finishing a pair a plan stopped), with every read-only check passed."""
    from ferry.s3 import events
    from ferry.s3.events import settle_seconds
    from ferry.s3.preflight import copy_settings
    from ferry.s3.versions import recorded_all_versions

    settle_seconds()  # FERRY_EVENT_SETTLE_SECONDS checked before anything runs
    check_sides(source_aws, target_aws)
    sqs = client(source_aws, "sqs")
    queue = events.find_queue(sqs, source, target)
    if not held_too:
        events.check_not_held(sqs, queue, source, target)
    recorded = events.recorded_prefix(sqs, queue)
    if prefix is not None and recorded is not None and prefix != recorded:
        raise BadInput(f"the migration of {source} into {target} was made with --prefix {recorded!r}, not {prefix!r}: "
                       "drop --prefix (or migrate that prefix with 'ferry bucket ... --prefix')")
    histories = recorded_all_versions(sqs, queue)
    if all_versions and not histories:
        raise BadInput(f"the migration of {source} into {target} was made without --all-versions, so the target has "
                       f"no histories to keep up: run 'ferry bucket {source} {target} --all-versions' first")
    job = build_job(BucketJob, source=source, target=target, prefix=prefix if prefix is not None else recorded or "",
                    source_aws=source_aws, target_aws=target_aws, all_versions=bool(histories),
                    target_kms_key=target_kms_key or events.recorded_target_key(sqs, queue))
    copy_settings(job, client(source_aws, "s3"), client(target_aws, "s3"))  # a usable key, Object Lock on both sides
    return job


@with_aws_sides
def migrate(
    source: SourceBucket,
    target: TargetBucket,
    prefix: Prefix = "",
    delete: Annotated[bool, typer.Option("--delete", help="Remove target keys the source does not have.")] = False,
    multipart_threshold: MultipartThreshold = MULTIPART_THRESHOLD,
    part_size: PartSize = PART_SIZE,
    live_sync: LiveSync = DEFAULT_LIVE_SYNC,
    events: Events = "auto",
    target_kms_key: TargetKmsKey = None,
    restore: Restore = None,
    restore_tier: RestoreTierOption = None,
    all_versions: AllVersions = False,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Sync bucket SOURCE into TARGET server-side, apply changes made meanwhile, verify. Rerun to resume."""
    job = build_job(BucketJob, source=source, target=target, prefix=prefix, delete=delete,
                    multipart_threshold=multipart_threshold, part_size=part_size, live_sync=live_sync,
                    events=events, source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    restore_days=restore, restore_tier=restore_tier, all_versions=all_versions)
    if job.restore_days:
        from ferry.s3.restore import restore_timing

        restore_timing()  # FERRY_RESTORE_POLL_SECONDS, FERRY_RESTORE_WAIT_SECONDS checked before anything runs
    connect(job)
    use_prefect(verbose)
    from flows.migrate_bucket import migrate_bucket
    from ferry.cli.progress import BucketProgress

    started = time.monotonic()
    with render.unless(json_output, lambda: BucketProgress(source, target, render.err)):
        result = migrate_bucket(**flow_arguments(job, migrate_bucket, preflight=False))  # connect() ran it
    elapsed = time.monotonic() - started
    if json_output:
        print_json(render.bucket_migration_json(result, elapsed))
    else:
        render.bucket_migration(result, elapsed)
    if result.archived:
        hint = (f"{result.restores_pending} restores are still under way: rerun the same command to wait for them "
                "(none is asked for twice)" if job.restore_days else "restore them (or rerun with --restore DAYS)")
        render.err.print(f"ferry: warning: {result.archived} archived objects ({result.archived_bytes:,} bytes, "
                         f"GLACIER, DEEP_ARCHIVE or Intelligent-Tiering archive tiers) were not copied: {hint}",
                         highlight=False, markup=False, soft_wrap=True)
    return EXIT_OK if result.verified else EXIT_DIFFERENT


@with_aws_sides
def verify(
    source: SourceBucket,
    target: TargetBucket,
    prefix: Prefix = "",
    repair: Annotated[bool, typer.Option("--repair", help="Copy missing and changed objects from the source.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="With --repair, also remove keys only the target has.")] = False,
    report_dir: ReportDir = None,
    deep: Annotated[bool, typer.Option("--deep", help="Also compare every object's additional checksums "
                                       "(CRC32C, SHA256...): one HEAD per object on each side.")] = False,
    target_kms_key: TargetKmsKey = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Compare every key's history: count, order, "
                                               "sizes and checksums of versions, delete markers (with --report-dir: "
                                               "the version-ID map).")] = False,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Compare keys, sizes and checksums of two buckets. Exit 0 equal (after --repair), 1 different."""
    job = build_job(BucketJob, source=source, target=target, prefix=prefix, delete=delete,
                    source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    all_versions=all_versions)
    connect(job, preflight=False)
    use_prefect(verbose)
    from flows.verify_bucket import verify_bucket

    if job.all_versions and repair:  # a repair writes histories: the target must keep versions
        from ferry.s3.versions import check_versioning

        check_versioning(client(job.source_aws, "s3"), client(job.target_aws, "s3"), job.source, job.target)
    report = verify_bucket(**flow_arguments(job, verify_bucket, repair=repair, report_dir=report_dir, deep=deep,
                                            fail_on_difference=False))
    if json_output:
        print_json(report.summary())
    else:
        render.bucket_verification(report)
    return EXIT_OK if report.equal else EXIT_DIFFERENT


@with_aws_sides
def sync(
    source: SourceBucket,
    target: TargetBucket,
    until_idle: Annotated[Optional[float], typer.Option("--until-idle", help="Stop once the queue is idle this many seconds.")] = None,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="The migration's prefix (default: the one it "
                                                  "was made with).")] = None,
    target_kms_key: TargetKmsKey = None,
    all_versions: Annotated[Optional[bool], typer.Option("--all-versions", help="Apply events to histories (default: "
                                                         "as the migration was made).")] = None,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Apply the source bucket's queued events to the target (the local poller for buckets)."""
    if until_idle is not None and until_idle < 0:
        raise BadInput(f"--until-idle must be zero or more seconds, got {until_idle}")
    job = as_migrated(source, target, source_aws, target_aws, prefix, target_kms_key, all_versions)
    use_prefect(verbose)
    from flows.migrate_bucket import sync_bucket

    counts = sync_bucket(**flow_arguments(job, sync_bucket, idle_seconds=until_idle))
    if json_output:
        print_json({"source": source, "target": target, **counts})
    else:
        render.out.print(f"applied {counts['messages']:,} event messages; {counts['failed']} failed "
                         "(retried by the queue)")
    return EXIT_OK


@with_aws_sides
def finish(
    source: SourceBucket,
    target: TargetBucket,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """End the live sync of SOURCE into TARGET: remove only what Ferry added to route the source's
    events, apply what is queued, delete the pair's queues (and its Lambda, if deployed). Exit 1 if
    dead letters remain (their keys may differ; their queue is kept)."""
    from ferry.s3 import events

    job = as_migrated(source, target, source_aws, target_aws, held_too=True)  # set up, or nothing to finish
    held = bool(events.held_by(client(source_aws, "sqs"), events.find_queue(client(source_aws, "sqs"), source, target)))
    use_prefect(verbose)
    from flows.migrate_bucket import finish_bucket

    finished = finish_bucket(**flow_arguments(job, finish_bucket, held=held))
    if json_output:
        print_json(finished)
    else:
        for line in finished["removed"]:
            render.out.print(f"removed {line}", highlight=False)
        for line in finished["kept"]:
            render.out.print(f"kept {line}", highlight=False)
        render.out.print(f"applied {finished['events_applied']:,} queued events", highlight=False)
    return EXIT_DIFFERENT if any(line.startswith("queue ") for line in finished["kept"]) else EXIT_OK
