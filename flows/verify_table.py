"""The verify-table flow: is the target still an exact copy of the source? If not, where not?

Run by `ferry verify table`, and on a schedule after a migration (see prefect.yaml). A scheduled run
fails when differences remain, so Prefect's notifications fire; `repair=True` fixes them first.
"""

from __future__ import annotations

from prefect import flow

from ferry import report as reports
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.dynamo.verify import VerifyReport
from ferry.errors import DifferencesRemain
from tasks.preflight import preflight_verify
from tasks.verify import verify_table as verify_table_task


@flow(name="verify-table", flow_run_name="verify-table {source} = {target}")
def verify_table(
    source: str,
    target: str,
    segments: int | None = None,
    repair: bool = False,
    sample: float | None = None,
    report_dir: str | None = None,
    fail_on_difference: bool = True,
    state_table: str = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> VerifyReport:
    job = TableJob(source=source, target=target, segments=segments, state_table=state_table,
                   source_aws=source_aws, target_aws=target_aws)
    total_segments = preflight_verify(job, repair)
    report = verify_table_task(job, total_segments, repair=repair, sample=sample, report_dir=report_dir,
                               record_outcome=False)
    if fail_on_difference and not report.equal:
        raise DifferencesRemain(reports.headline(report))
    return report
