"""Step 0: preflight checks, before anything is written."""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from ferry import lease
from ferry.config import TableJob
from ferry.dynamo.preflight import TablePlan, check_syncable, check_verifiable, preflight_table
from tasks.common import RETRYING, state_store, table_clients


@task(
    name="preflight",
    task_run_name="preflight {job.source} -> {job.target}",
    **RETRYING,
)
def preflight(job: TableJob) -> TablePlan:
    """Every check, then the target, the lease (held by this flow run; its poller renews it) and the record."""
    clients = table_clients(job)
    return preflight_table(job, clients, state_store(job, clients), lease.holder_name(flow_run.id))


@task(
    name="preflight-verify",
    task_run_name="check {job.source} and {job.target} exist",
    **RETRYING,
)
def preflight_verify(job: TableJob, repair: bool = False) -> int:
    """Both tables exist with the same keys (and a repair meets no unfinished backfill); returns the
    number of scan segments to verify with."""
    clients = table_clients(job)
    return check_verifiable(job, clients, repair)


@task(
    name="preflight-sync",
    task_run_name="check {job.source} -> {job.target} can be synced",
    **RETRYING,
)
def preflight_sync(job: TableJob) -> str:
    """The migration is recorded and its stream is the source's current one; returns the stream ARN."""
    clients = table_clients(job)
    return check_syncable(job, clients, state_store(job, clients))
