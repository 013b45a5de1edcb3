"""The migrate-bucket flow: copy a live bucket server-side, then prove the copy.

    0. preflight             both buckets reachable; no clash with existing event notifications
    1. enable_bucket_events  object events from now on go to a durable queue
    2. live sync             with live_sync="lambda": a Lambda consumes that queue (the same handler)
    3. bulk sync             both buckets compared range by range as they are listed; each batch
                             of differences copied server-side by its own task meanwhile
    4. drain events          apply what changed during the copy (HEAD the source, make the target match)
    5. verify                keys, sizes and checksums of both sides (listed again unless step 3
                             found nothing to do and no event came: then its comparison is the proof)

With all_versions, steps 3 and 5 work on histories: every version and delete marker of every key,
in order (ferry/s3/versions.py), and live sync makes each event's key's history equal.

Rerunning it resumes: it lists again and copies only what is missing or different.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import AwsSide, BucketJob, LiveSyncMode
from ferry.s3.sync import listing_is_proof
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE
from tasks.handles import stop_all_on_signals
from tasks.s3 import (delete_extras, deploy_bucket_live_sync, drain_bucket_events, enable_bucket_events,
                      preflight_bucket, sync_objects, verify_bucket)
from tasks.s3_versions import (recorded_versions_mode, remember_versions_mode, sync_object_versions,
                               verify_object_versions)

PARALLEL_BATCHES = 2


@dataclass
class BucketMigrationResult:
    source: str
    target: str
    source_objects: int
    target_objects: int
    copied: int
    deleted: int
    bytes_copied: int
    verified: bool
    events_applied: int
    archived: int = 0  # source objects archived (GLACIER, DEEP_ARCHIVE), not restored: not copied
    archived_bytes: int = 0
    all_versions: bool = False
    versions_copied: int = 0  # with all_versions (then `copied` counts them too)
    delete_markers_copied: int = 0
    version_map: int = 0  # (source, target) pairs of versions and delete markers the verification found in place


@flow(name="migrate-bucket", flow_run_name="migrate-bucket {source} -> {target}",
      task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_BATCHES))
def migrate_bucket(
    source: str,
    target: str,
    prefix: str = "",
    delete: bool = False,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    live_sync: LiveSyncMode = "poller",
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
    preflight: bool = True,
    all_versions: bool = False,
) -> BucketMigrationResult:
    """`preflight=False` skips step 0 when the caller has just run the same checks (the CLI does)."""
    job = BucketJob(source=source, target=target, prefix=prefix, delete=delete,
                    multipart_threshold=multipart_threshold, part_size=part_size, live_sync=live_sync,
                    source_aws=source_aws, target_aws=target_aws, all_versions=all_versions)
    with stop_all_on_signals(interrupt=True):  # Ctrl-C, SIGTERM: copies stop after the objects in hand
        if preflight:
            preflight_bucket(job)
        queue_url = enable_bucket_events(job)
        remember_versions_mode(job, queue_url)  # `ferry sync bucket` and the Lambda apply events the same way
        if job.live_sync == "lambda":
            deploy_bucket_live_sync(job, queue_url)

        if job.all_versions:  # every key's history, key by key as both sides' versions are listed
            histories = sync_object_versions(job)
            copied, bytes_copied, planned = histories.versions, histories.bytes, histories.planned
            deleted = histories.removed
        else:
            synced = sync_objects(job)  # compared range by range; each batch of differences copied by its own task
            copied, bytes_copied, planned = synced.copied, synced.bytes_copied, synced.planned
            deleted = delete_extras(job, synced.to_delete) if delete and synced.to_delete else 0

        drained = drain_bucket_events(job, queue_url, until_caught_up=True)  # changes made during the copy
        # When nothing was copied, deleted, changed or failed since the listings, their comparison is the proof.
        untouched = listing_is_proof(planned, deleted, drained)
        if job.all_versions:
            report = verify_object_versions(job, compared=histories.found if untouched else None,
                                            live_sync_queue=queue_url)
        else:
            report = verify_bucket(job, compared=synced.comparison if untouched else None, live_sync_queue=queue_url)
    return BucketMigrationResult(
        source=source, target=target, source_objects=report.source_objects, target_objects=report.target_objects,
        copied=copied, deleted=deleted, bytes_copied=bytes_copied,
        verified=report.verified(delete), archived=report.archived_count, archived_bytes=report.archived_bytes,
        events_applied=drained["messages"], all_versions=job.all_versions,
        versions_copied=histories.versions if job.all_versions else 0,
        delete_markers_copied=histories.markers if job.all_versions else 0,
        version_map=getattr(report, "version_map", 0),
    )


@flow(name="sync-bucket", flow_run_name="sync-bucket {source} -> {target}")
def sync_bucket(
    source: str,
    target: str,
    idle_seconds: float | None = None,
    prefix: str = "",
    multipart_threshold: int = MULTIPART_THRESHOLD,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
    all_versions: bool | None = None,
) -> dict:
    """The bucket poller: apply queued events until idle (or until stopped). `all_versions`: None,
    the mode the pair was migrated with (its queue remembers it)."""
    job = BucketJob(source=source, target=target, prefix=prefix, multipart_threshold=multipart_threshold,
                    source_aws=source_aws, target_aws=target_aws, all_versions=bool(all_versions))
    queue_url = enable_bucket_events(job)  # idempotent: finds the queue and configuration in place
    if all_versions is None:
        job = job.model_copy(update={"all_versions": recorded_versions_mode(job, queue_url)})
    return drain_bucket_events(job, queue_url, idle_seconds)
