"""The migrate-bucket flow: copy a live bucket server-side, then prove the copy.

    0. preflight             both buckets reachable; with --events notification, no overlap with an
                             existing consumer's notification entry; what every copy carries read
                             (target KMS key, Object Lock)
    1. enable_bucket_events  object events from now on go to a durable queue (a notification entry,
                             or an EventBridge rule beside existing consumers: ferry/s3/routes.py)
    2. live sync             with live_sync="lambda": a Lambda consumes that queue (the same handler)
    3. bulk sync             both buckets compared range by range as they are listed; each batch
                             of differences copied server-side by its own task meanwhile
    4. restore               with restore_days: archived objects restored, each copied once it is
    5. drain events          apply what changed during the copy (HEAD the source, make the target match)
    6. verify                keys, sizes and checksums of both sides (listed again unless step 3
                             found nothing to do and no event came: then its comparison is the proof)

With all_versions, steps 3 and 5 work on histories: every version and delete marker of every key,
in order (ferry/s3/versions.py), and live sync makes each event's key's history equal.

Rerunning it resumes: it lists again and copies only what is missing or different.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import AwsSide, BucketJob, EventsMode, LiveSyncMode, RestoreTier
from ferry.s3.sync import listing_is_proof
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE
from tasks.handles import stop_all_on_signals
from tasks.s3 import (delete_bucket_queues, delete_extras, deploy_bucket_live_sync, drain_bucket_events,
                      enable_bucket_events, find_bucket_queue, preflight_bucket, read_copy_settings,
                      remove_bucket_live_sync, remove_bucket_route, restore_archived, sync_objects, verify_bucket)
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
    archived: int = 0  # source objects archived (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering archive tiers): not copied
    archived_bytes: int = 0
    restores_started: int = 0  # with restore_days: restores asked for (or found under way)
    restores_pending: int = 0  # still under way when the wait ended: a rerun waits for them
    restored_copied: int = 0  # restored objects copied (in `copied` too)
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
    events: EventsMode = "auto",
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
    preflight: bool = True,
    target_kms_key: str | None = None,
    restore_days: int | None = None,
    restore_tier: RestoreTier | None = None,
    all_versions: bool = False,
) -> BucketMigrationResult:
    """`preflight=False` skips step 0's checks when the caller has just run them (the CLI does)."""
    job = BucketJob(source=source, target=target, prefix=prefix, delete=delete,
                    multipart_threshold=multipart_threshold, part_size=part_size, live_sync=live_sync,
                    events=events, source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    restore_days=restore_days, restore_tier=restore_tier, all_versions=all_versions)
    with stop_all_on_signals(interrupt=True):  # Ctrl-C, SIGTERM: copies stop after the objects in hand
        # what every copy carries (the target key's ARN, Object Lock), read by the checks or on their own
        settings = preflight_bucket(job) if preflight else read_copy_settings(job)
        queue_url = enable_bucket_events(job)
        remember_versions_mode(job, queue_url)  # `ferry sync bucket` and the Lambda apply events the same way
        if job.live_sync == "lambda":
            deploy_bucket_live_sync(job, queue_url, settings)

        restored = None
        if job.all_versions:  # every key's history, key by key as both sides' versions are listed
            histories = sync_object_versions(job, settings)
            copied, bytes_copied, planned = histories.versions, histories.bytes, histories.planned
            deleted = histories.removed
        else:
            synced = sync_objects(job, settings)  # compared range by range; each batch of differences copied meanwhile
            deleted = delete_extras(job, synced.to_delete, settings) if delete and synced.to_delete else 0
            restored = restore_archived(job, synced.archived, settings) if synced.archived else None
            copied = synced.copied + (restored.copied if restored else 0)
            bytes_copied = synced.bytes_copied + (restored.bytes_copied if restored else 0)
            planned = synced.planned + (restored.copied if restored else 0)

        drained = drain_bucket_events(job, queue_url, until_caught_up=True, settings=settings)  # changes made meanwhile
        # When nothing was copied, deleted, changed or failed since the listings, their comparison is the proof.
        untouched = listing_is_proof(planned, deleted, drained)
        if job.all_versions:
            report = verify_object_versions(job, compared=histories.found if untouched else None,
                                            live_sync_queue=queue_url, settings=settings)
        else:
            report = verify_bucket(job, compared=synced.comparison if untouched else None, live_sync_queue=queue_url,
                                   settings=settings)
    return BucketMigrationResult(
        source=source, target=target, source_objects=report.source_objects, target_objects=report.target_objects,
        copied=copied, deleted=deleted, bytes_copied=bytes_copied,
        verified=report.verified(delete), archived=report.archived_count, archived_bytes=report.archived_bytes,
        events_applied=drained["messages"], restores_started=restored.started if restored else 0,
        restores_pending=len(restored.pending) if restored else 0, restored_copied=restored.copied if restored else 0,
        all_versions=job.all_versions, versions_copied=histories.versions if job.all_versions else 0,
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
    target_kms_key: str | None = None,
    all_versions: bool | None = None,
) -> dict:
    """The bucket poller: apply queued events until idle (or until stopped). `all_versions`: None,
    the mode the pair was migrated with (its queue remembers it)."""
    job = BucketJob(source=source, target=target, prefix=prefix, multipart_threshold=multipart_threshold,
                    source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    all_versions=bool(all_versions))
    queue_url = enable_bucket_events(job)  # idempotent: finds the queue and configuration in place
    if all_versions is None:
        job = job.model_copy(update={"all_versions": recorded_versions_mode(job, queue_url)})
    return drain_bucket_events(job, queue_url, idle_seconds)


@flow(name="finish-bucket", flow_run_name="finish live sync {source} -> {target}")
def finish_bucket(
    source: str,
    target: str,
    prefix: str = "",
    target_kms_key: str | None = None,
    all_versions: bool = False,
    held: bool = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> dict:
    """End a bucket's live sync, leaving the source bucket as it was before Ferry:
    1. remove the route Ferry added (its notification entry or EventBridge rule; EventBridge
       delivery only if Ferry turned it on and nothing else may use it), so no new event comes;
    2. remove the live-sync Lambda, if one was deployed (its log group stays);
    3. apply what the queue still holds, as the migration was made (its prefix, key, mode), once
       events still in transit have settled;
    4. delete the pair's queues, unless messages remain in them (dead letters are kept to look at).
    `held`: a plan stopped this direction (it switched the service the other way): its queued events
    are the old home's, late, and are not applied over the service's writes; the queue is deleted
    only if empty. Rerunning it finishes what a killed run left."""
    job = BucketJob(source=source, target=target, prefix=prefix, target_kms_key=target_kms_key,
                    all_versions=all_versions, source_aws=source_aws, target_aws=target_aws)
    queue_url = find_bucket_queue(job)
    unrouted = remove_bucket_route(job, queue_url)
    lambda_removed = remove_bucket_live_sync(job, queue_url)
    drained = {"messages": 0, "failed": 0} if held else drain_bucket_events(job, queue_url, until_caught_up=True)
    queues_removed, queues_kept, dead_letters = delete_bucket_queues(job)
    return {"source": source, "target": target, "removed": unrouted.removed + lambda_removed + queues_removed,
            "kept": unrouted.kept + queues_kept, "events_applied": drained["messages"],
            "events_failed": drained["failed"], "dead_letters": dead_letters}
