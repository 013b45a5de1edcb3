"""Step 3: backfill, one Prefect task per scan segment, checkpointed page by page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from prefect import task
from prefect.artifacts import update_progress_artifact

from ferry.config import TableJob
from ferry.dynamo.backfill import copy_segment
from ferry.dynamo.preflight import TablePlan
from ferry.state import SegmentProgress, StateStore
from tasks.common import RETRYING, state_store, table_clients
from tasks.handles import BackfillLimits, LiveSync, limits_name, live_sync_name, this_run

PROGRESS_EVERY_SECONDS = 2.0


@dataclass
class SegmentOutcome:
    segment: int
    items: int  # in the segment, over all runs
    pages: int
    copied_now: int  # by this run: a resumed run does not copy confirmed pages again


class ProgressReporter:
    """Saves each page's checkpoint, and now and then updates the flow's progress artifact."""

    def __init__(self, state: StateStore, plan: TablePlan, artifact_id: UUID | None):
        self.state, self.plan, self.artifact_id = state, plan, artifact_id
        self.last_report = 0.0

    def __call__(self, progress: SegmentProgress) -> None:
        self.state.save_segment(self.plan.migration_id, progress)
        if not self.artifact_id or time.monotonic() - self.last_report < PROGRESS_EVERY_SECONDS:
            return
        self.last_report = time.monotonic()
        migration = self.state.load(self.plan.migration_id)
        percent = 100.0 * migration.copied / max(self.plan.source_item_estimate, migration.copied, 1)
        update_progress_artifact(self.artifact_id, min(percent, 99.0))


@task(
    name="backfill-segment",
    task_run_name="backfill {job.source} segment {segment}",
    **RETRYING,
)
def backfill_segment(job: TableJob, plan: TablePlan, segment: int, artifact_id: UUID | None = None) -> SegmentOutcome:
    """Copy one segment from its last checkpoint; a retry or a rerun resumes, never re-copies confirmed pages."""
    clients = table_clients(job)
    state = state_store(job, clients)
    start = state.load(plan.migration_id).segment(segment)
    limits = this_run(limits_name(job.migration_id), lambda: BackfillLimits.for_job(job, clients))
    live_sync = this_run(live_sync_name(job.migration_id), LiveSync)  # what it writes, the backfill respects
    end = copy_segment(
        clients.source,
        clients.target,
        job.source,
        job.target,
        start,
        checkpoint=ProgressReporter(state, plan, artifact_id),
        key_names=plan.key_names,
        live_writes=live_sync.live_writes,
        check_versions=plan.check_versions,
        page_size=job.page_size,
        read_limit=limits.read,
        write_limit=limits.write,
    )
    return SegmentOutcome(segment, end.items, end.pages, copied_now=end.items - start.items)
