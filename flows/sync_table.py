"""The sync-table flow: keep a migrated table in step with its source by polling the source's stream.

The local poller (`ferry sync table`): the same apply function as the Lambda, shard checkpoints in
the state table so a restart resumes without loss, poison records set aside as dead letters.
Scheduled with `idle_seconds`, it is a periodic re-sync; without, it runs until stopped.
"""

from __future__ import annotations

from prefect import flow

from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.dynamo.stream import FollowResult
from tasks.preflight import preflight_sync
from tasks.stream import follow_source_stream


@flow(name="sync-table", flow_run_name="sync-table {source} -> {target}")
def sync_table(
    source: str,
    target: str,
    idle_seconds: float | None = None,
    state_table: str = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> FollowResult:
    job = TableJob(source=source, target=target, state_table=state_table, source_aws=source_aws,
                   target_aws=target_aws)
    stream_arn = preflight_sync(job)
    return follow_source_stream(job, stream_arn, idle_seconds=idle_seconds)
