"""The migrate-table flow: move one live DynamoDB table, then prove the copy is exact.

    0. preflight      every check that bad input can fail, before anything is written
    1. enable_stream  changes from now on are recorded, so none made during the copy is lost
    3. backfill       parallel scan segments, one task each, checkpointed page by page
    4. catch_up       replay the recorded changes with the live-sync Lambda's apply function
    5. verify         count and content checksum of both tables, compared

(Step 2, deploying the live-sync Lambda, comes with the live-sync work.) Rerunning the same flow
resumes it: confirmed pages are not copied again and the stream replay continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from tasks.backfill import backfill_segment
from tasks.preflight import preflight
from tasks.stream import catch_up, enable_source_stream
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


@flow(
    name="migrate-table",
    flow_run_name="migrate-table {source} -> {target}",
    task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SEGMENTS),
    log_prints=True,
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
    state_table: str = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> TableMigrationResult:
    job = TableJob(
        source=source, target=target, segments=segments, page_size=page_size, create_target=create_target,
        allow_nonempty=allow_nonempty, restart=restart, verify=verify, state_table=state_table,
        source_aws=source_aws, target_aws=target_aws,
    )
    plan = preflight(job)
    stream_arn = enable_source_stream(job, plan)

    progress = create_progress_artifact(
        0.0, key=artifact_key("backfill", source, target), description=f"Backfill of {source} into {target}"
    )
    segments_running = [backfill_segment.submit(job, plan, n, progress) for n in range(plan.total_segments)]
    outcomes = [segment.result() for segment in segments_running]
    update_progress_artifact(progress, 100.0)

    replayed = catch_up(job, plan, stream_arn)

    if not verify:
        mark_done(job)
        comparison = None
    else:
        comparison = verify_table(job, plan.total_segments)
    return TableMigrationResult(
        source=source,
        target=target,
        source_items=comparison.source_items if comparison else None,
        target_items=comparison.target_items if comparison else None,
        copied=sum(o.copied_now for o in outcomes),
        resumed=plan.resumed,
        verified=bool(comparison and comparison.equal),
        segments=plan.total_segments,
        stream_records=replayed.records,
        source_checksum=comparison.source_checksum if comparison else None,
        target_checksum=comparison.target_checksum if comparison else None,
    )
