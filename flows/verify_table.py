"""The verify-table flow: is the target still an exact copy of the source?

Usable on its own (`ferry verify table`) and on a schedule after a migration.
"""

from __future__ import annotations

from prefect import flow

from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.dynamo.verify import TableComparison
from tasks.verify import verify_table as verify_table_task
from tasks.preflight import preflight_verify


@flow(name="verify-table", flow_run_name="verify-table {source} = {target}")
def verify_table(
    source: str,
    target: str,
    segments: int | None = None,
    state_table: str = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> TableComparison:
    job = TableJob(source=source, target=target, segments=segments, state_table=state_table,
                   source_aws=source_aws, target_aws=target_aws)
    total_segments = preflight_verify(job)
    return verify_table_task(job, total_segments, record_outcome=False)
