"""Step 4: verify the copy, pinpoint and optionally repair differences, publish the report."""

from __future__ import annotations

import json
import re
import time

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ferry import report as reports
from ferry.config import TableJob
from ferry.dynamo.schema import key_schema, require_table, ttl_attribute
from ferry.dynamo.verify import VerifyReport, sample_tables, verify_tables
from ferry.state import Phase
from tasks.common import RETRYING, state_store, table_clients
from tasks.handles import LiveSync, existing, live_sync_name, newest


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish(job: TableJob, report: VerifyReport) -> None:
    """A table artifact (per key range, or the differences) and a Markdown report in the Prefect UI."""
    frame = reports.ranges_frame(report)
    if frame.empty:
        frame = reports.differences_frame(report)
    create_table_artifact(key=artifact_key("verify", job.source, job.target),
                          table=json.loads(frame.to_json(orient="records")) if not frame.empty else [],
                          description=reports.headline(report))
    create_markdown_artifact(key=artifact_key("verify", job.source, job.target, "report"),
                             markdown=reports.markdown(report), description=reports.headline(report))


def shared_ttl(clients, job: TableJob) -> str | None:
    """The TTL attribute both tables expire items by; expired items are left out only then (a target
    without that TTL keeps them for good, so there they are differences)."""
    source_ttl = ttl_attribute(clients.source, job.source)
    if source_ttl and source_ttl != ttl_attribute(clients.target, job.target):
        get_run_logger().warning("TTL is on for %s (attribute %s) but not on the same attribute for %s: items past "
                                 "their expiry are compared like any other", job.source, source_ttl, job.target)
        return None
    return source_ttl


SETTLE_TIMEOUT_SECONDS = 120  # a poller this far behind is not waited for: the key is reported instead


def live_sync_settle(job: TableJob):
    """When a poller of this migration follows the stream in this process (this flow run's, or the
    run that started this verification as a subflow, like a cutover's gate): a wait for it to apply
    every change made before the call, for the re-reads of differences; None otherwise (fixed
    delays). A poller that is stopped, dead or more than SETTLE_TIMEOUT_SECONDS behind is not waited
    for: the re-read goes ahead and reports what still differs."""
    name = live_sync_name(job.migration_id)
    sync = existing(name) or newest(name)
    if not isinstance(sync, LiveSync) or sync.stop.is_set() or sync.failure is not None:
        return None

    def settle() -> None:
        if sync.stop.is_set() or sync.failure is not None:
            return
        try:
            sync.wait_until_applied(time.time(), SETTLE_TIMEOUT_SECONDS)
        except Exception:  # timed out, or the poller died: its own task reports that
            return

    return settle


@task(
    name="verify-table",
    task_run_name="verify {job.source} = {job.target}",
    **RETRYING,
)
def verify_table(job: TableJob, segments: int, repair: bool = False, sample: float | None = None,
                 report_dir: str | None = None, record_outcome: bool = True) -> VerifyReport:
    clients = table_clients(job)
    state = state_store(job, clients)
    key_names = [name for name, _, _ in key_schema(require_table(clients.source, job.source, "source"))]
    migration = state.load(job.migration_id) if record_outcome else None
    if migration:
        state.set_phase(migration, Phase.VERIFY)
    if sample:
        report = sample_tables(clients.source, clients.target, job.source, job.target, key_names, sample)
    else:
        report = verify_tables(clients.source, clients.target, job.source, job.target, key_names, segments, fix=repair,
                               ttl_attribute=shared_ttl(clients, job), settle=live_sync_settle(job))
    if migration:
        state.set_phase(migration, Phase.DONE if report.equal else Phase.DIFFERENT)
    get_run_logger().info(reports.headline(report))
    publish(job, report)
    if report_dir:
        for path in reports.write_report(report, report_dir):
            get_run_logger().info("report written to %s", path)
    for difference in report.differences:  # items stay in this task: what it returns (a Prefect result) names keys
        difference.source_item = None
    return report


@task(name="finish", task_run_name="record {job.source} -> {job.target} as done", **RETRYING)
def mark_done(job: TableJob) -> None:  # returns None: there is no comparison
    """Without verification, a migration is done once the stream is caught up."""
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id)
    state.set_phase(migration, Phase.DONE)
