"""Step 3: backfill, one Prefect task per scan segment, checkpointed page by page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from botocore.exceptions import ClientError
from prefect import task
from prefect.artifacts import update_progress_artifact
from prefect.runtime import flow_run

from ferry import lease
from ferry.config import TableJob
from ferry.dynamo.backfill import JournalWrites, copy_segment, rewrite_journal
from ferry.dynamo.preflight import TablePlan
from ferry.errors import CannotContinue, denied_line, failure_line
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


def hold_live_sync_lease(job: TableJob, live_sync: LiveSync, holding: lease.Holding) -> None:
    """Before and after each page: this run still holds the live-sync lease (so no other
    live sync writes beside the page, unnoted), and its live sync has not stopped for good. Called
    from the segment's own threads, where Prefect's run context is not set: the holding is made
    by the task."""
    if live_sync.failure is not None:
        failure = live_sync.failure
        denied = denied_line(failure) if isinstance(failure, ClientError) else None
        raise CannotContinue(f"live sync of {job.source} into {job.target} stopped, and the backfill with it: "
                             + (denied or f"{failure_line(failure)}; rerun the same command to resume"))
    if other := holding.confirm():
        raise CannotContinue(lease.already_running(job.source, job.target, other))


@task(name="rewrite-lambda-writes", task_run_name="rewrite what the Lambda wrote into {job.target}", **RETRYING)
def rewrite_lambda_writes(job: TableJob) -> int:
    """Before a resumed backfill in Lambda mode: the keys the Lambda noted, written again under the rule."""
    clients = table_clients(job)
    state = state_store(job, clients)
    return rewrite_journal(clients.source, clients.target, job.source, job.target, state.client, state.table_name,
                           job.migration_id)


@task(
    name="backfill-segment",
    task_run_name="backfill {job.source} -> {job.target} segment {segment}",
    **RETRYING,
)
def backfill_segment(job: TableJob, plan: TablePlan, segment: int, artifact_id: UUID | None = None) -> SegmentOutcome:
    """Copy one segment from its last checkpoint; a retry or a rerun resumes, never re-copies confirmed pages."""
    clients = table_clients(job)
    state = state_store(job, clients)
    start = state.load(plan.migration_id).segment(segment)
    limits = this_run(limits_name(job.migration_id), lambda: BackfillLimits.for_job(job, clients))
    live_sync = this_run(live_sync_name(job.migration_id), LiveSync)  # what it writes, the backfill respects
    holding = lease.Holding(state, job.migration_id, lease.holder_name(flow_run.id))  # taken in preflight
    end = copy_segment(
        clients.source,
        clients.target,
        job.source,
        job.target,
        start,
        checkpoint=ProgressReporter(state, plan, artifact_id),
        key_names=plan.key_names,
        live_writes=(JournalWrites(state.client, state.table_name, job.migration_id) if job.live_sync == "lambda"
                     else live_sync.live_writes),  # the Lambda's notes are in the state table
        hold_lease=lambda: hold_live_sync_lease(job, live_sync, holding),
        check_versions=plan.check_versions,
        page_size=job.page_size,
        read_limit=limits.read,
        write_limit=limits.write,
    )
    return SegmentOutcome(segment, end.items, end.pages, copied_now=end.items - start.items)
