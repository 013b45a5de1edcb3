"""Step 1 (enable the source's stream) and the catch-up replay that follows the backfill."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ferry.config import TableJob
from ferry.dynamo.preflight import TablePlan
from ferry.dynamo.stream import ReplayResult, enable_stream, replay_stream
from ferry.errors import FerryError
from lambdas.dynamo_apply import apply_stream_records
from tasks.common import RETRIES, RETRY_DELAYS, retry_unless_user_error, state_store, table_clients


@task(
    name="enable-stream",
    task_run_name="enable stream on {job.source}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_unless_user_error,
    cache_policy=NO_CACHE,
)
def enable_source_stream(job: TableJob, plan: TablePlan) -> str:
    """Enable (or reuse) the stream and record it: changes from here on will be replayed."""
    clients = table_clients(job)
    state = state_store(job, clients)
    stream_arn = enable_stream(clients.source, clients.source_streams, job.source)
    migration = state.load(plan.migration_id)
    if migration.stream_arn and migration.stream_arn != stream_arn:
        raise FerryError(
            f"the stream of {job.source!r} changed since this migration started (it was disabled and "
            "re-enabled), so changes made in between are lost: run again with --restart"
        )
    migration.stream_arn = stream_arn
    state.set_phase(migration, "backfill")
    get_run_logger().info("stream %s enabled; changes from now on will be replayed", stream_arn)
    return stream_arn


@task(
    name="catch-up",
    task_run_name="catch up {job.target} from the stream of {job.source}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_unless_user_error,
    cache_policy=NO_CACHE,
)
def catch_up(job: TableJob, plan: TablePlan, stream_arn: str) -> ReplayResult:
    """Replay every change recorded since the stream was enabled, with the Lambda's apply function."""
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(plan.migration_id)
    state.set_phase(migration, "catch_up")
    result = replay_stream(
        clients.source_streams,
        stream_arn,
        checkpoints=dict(migration.shards),
        apply=lambda records: apply_stream_records(clients.target, job.target, records),
        save_checkpoint=lambda shard, sequence: state.save_shard(plan.migration_id, shard, sequence),
    )
    get_run_logger().info("replayed %d stream records from %d shards", result.records, result.shards)
    return result
