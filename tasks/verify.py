"""Step 4: verify the copy, publish the result as a table artifact, record the outcome."""

from __future__ import annotations

import re

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ferry.config import TableJob
from ferry.dynamo.verify import TableComparison, compare_tables
from tasks.common import RETRIES, RETRY_DELAYS, retry_unless_user_error, state_store, table_clients


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@task(
    name="verify-table",
    task_run_name="verify {job.source} = {job.target}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_unless_user_error,
    cache_policy=NO_CACHE,
)
def verify_table(job: TableJob, segments: int, record_outcome: bool = True) -> TableComparison:
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id) if record_outcome else None
    if migration:
        state.set_phase(migration, "verify")
    comparison = compare_tables(clients.source, clients.target, job.source, job.target, segments)
    if migration:
        state.set_phase(migration, "done" if comparison.equal else "different")
    create_table_artifact(
        key=artifact_key("verify", job.source, job.target),
        table=[{"table": job.source, "side": "source", "items": comparison.source_items, "checksum": comparison.source_checksum},
               {"table": job.target, "side": "target", "items": comparison.target_items, "checksum": comparison.target_checksum}],
        description=f"{'EQUAL' if comparison.equal else 'DIFFERENT'}: {job.source} -> {job.target}",
    )
    return comparison


@task(name="finish", task_run_name="record {job.source} -> {job.target} as done", retries=RETRIES,
      retry_delay_seconds=RETRY_DELAYS, cache_policy=NO_CACHE)
def mark_done(job: TableJob) -> None:
    """Without verification, a migration is done once the stream is caught up."""
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id)
    state.set_phase(migration, "done")
