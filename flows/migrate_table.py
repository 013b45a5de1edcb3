"""The migrate-table flow: move one live DynamoDB table, then prove the copy is exact.

    0. preflight      every check that bad input can fail, before anything is written
    1. enable_stream  changes from now on are recorded, so none made during the copy is lost
    2. live sync      the poller starts now and runs throughout, applying each change within
                      seconds, beside ...
    3. backfill       ... parallel scan segments, one task each, checkpointed page by page; both
                      write through one rule (lambdas/write_rule.py), so neither replaces a newer
                      state or revives a deleted key, whatever the interleaving
    4. catch up       live sync switches to plain writes and reads the stream to its end (the gate)
    5. verify         both tables compared as hash trees while live sync goes on; differences are
                      named; then the write rule's markers are cleared from the target

Live sync thus only has to keep up with the service, never with the backfill's length: the stream's
24-hour retention bounds live sync's lag, not the copy. With --live-sync lambda the Lambda is
deployed and started in step 2; it notes what it writes in the state table's journal, which the
backfill reads after each page, and the gate reads what it has applied.
Rerunning the same flow resumes it: confirmed pages are not copied again and the stream replay
continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import DEFAULT_STATE_TABLE, AwsSide, LiveSyncMode, TableJob
from tasks.backfill import backfill_segment, rewrite_lambda_writes
from tasks.lambda_sync import deploy_live_sync, start_lambda_sync, wait_for_lambda_catch_up
from tasks.handles import stop_all_on_signals
from tasks.preflight import preflight
from tasks.stream import (clear_write_markers, end_backfill_guard, enable_source_stream, follow_source_stream,
                          stop_live_sync, wait_for_catch_up)
from tasks.verify import artifact_key, mark_done, verify_table

PARALLEL_SEGMENTS = 16


@dataclass
class TableMigrationResult:
    source: str
    target: str
    source_items: int | None
    target_items: int | None
    copied: int
    resumed: bool
    verified: bool
    segments: int
    stream_records: int
    source_checksum: str | None = None
    target_checksum: str | None = None


def backfill(job: TableJob, plan) -> list:
    """Step 3: every segment as its own task, with a progress artifact; their outcomes."""
    progress = create_progress_artifact(
        0.0, key=artifact_key("backfill", job.source, job.target), description=f"Backfill of {job.source} into {job.target}"
    )
    segments_running = [backfill_segment.submit(job, plan, n, progress) for n in range(plan.total_segments)]
    outcomes = [segment.result() for segment in segments_running]
    update_progress_artifact(progress, 100.0)
    return outcomes


@flow(
    name="migrate-table",
    flow_run_name="migrate-table {source} -> {target}",
    task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SEGMENTS),
)
def migrate_table(
    source: str,
    target: str,
    segments: int | None = None,
    page_size: int | None = None,
    create_target: bool = False,
    allow_nonempty: bool = False,
    restart: bool = False,
    verify: bool = True,
    live_sync: LiveSyncMode = "poller",
    state_table: str = DEFAULT_STATE_TABLE,
    max_read_units: float | None = None,
    max_write_units: float | None = None,
    read_capacity_percent: float | None = None,
    write_capacity_percent: float | None = None,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> TableMigrationResult:
    job = TableJob(
        source=source, target=target, segments=segments, page_size=page_size, create_target=create_target,
        allow_nonempty=allow_nonempty, restart=restart, verify=verify, live_sync=live_sync, state_table=state_table,
        max_read_units=max_read_units, max_write_units=max_write_units, read_capacity_percent=read_capacity_percent,
        write_capacity_percent=write_capacity_percent, source_aws=source_aws, target_aws=target_aws,
    )
    with stop_all_on_signals(interrupt=True):  # Ctrl-C, SIGTERM: each step stops after the page in hand
        plan = preflight(job)
        stream_arn = enable_source_stream(job, plan)
        if job.live_sync == "lambda":
            deployment = deploy_live_sync(job, stream_arn)
            start_lambda_sync(job, deployment)  # at once: it notes its writes in the journal for the backfill
            if plan.check_versions:  # resuming beside an earlier live sync: a killed page may have erased its write
                rewrite_lambda_writes(job)
            outcomes = backfill(job, plan)
            wait_for_lambda_catch_up(job, stream_arn)  # the gate: plain writes from now, every change so far applied
            comparison = verify_table(job, plan.total_segments, repair=job.restart) if verify else mark_done(job)
            clear_write_markers(job, plan.total_segments)
            replayed = None
        else:
            syncing = follow_source_stream.submit(job, stream_arn)  # live sync from now on, until stopped below
            try:
                outcomes = backfill(job, plan)
                end_backfill_guard(job)  # nothing writes older images any more
                wait_for_catch_up(job)  # the gate: every change made so far is applied
                # verify while live sync goes on applying new changes
                # after --restart, what the copy cannot see (items deleted from the source since) is repaired
                comparison = verify_table(job, plan.total_segments, repair=job.restart) if verify else mark_done(job)
                clear_write_markers(job, plan.total_segments)
            finally:
                stop_live_sync(job)
            replayed = syncing.result()
    return TableMigrationResult(
        source=source,
        target=target,
        source_items=comparison.source_items if comparison else None,
        target_items=comparison.target_items if comparison else None,
        copied=sum(o.copied_now for o in outcomes),
        resumed=plan.resumed,
        verified=bool(comparison and comparison.equal),
        segments=plan.total_segments,
        stream_records=replayed.records if replayed else 0,
        source_checksum=comparison.source_checksum if comparison else None,
        target_checksum=comparison.target_checksum if comparison else None,
    )
