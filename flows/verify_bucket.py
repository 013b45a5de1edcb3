"""The verify-bucket flow: keys, sizes and checksums of two buckets; optional repair."""

from __future__ import annotations

from prefect import flow

from ferry.config import AwsSide, BucketJob
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE
from ferry.errors import DifferencesRemain
from ferry.s3.verify import BucketReport
from tasks.s3 import verify_bucket as verify_bucket_task
from tasks.s3_versions import verify_object_versions


@flow(name="verify-bucket", flow_run_name="verify-bucket {source} = {target}")
def verify_bucket(
    source: str,
    target: str,
    prefix: str = "",
    delete: bool = False,
    repair: bool = False,
    report_dir: str | None = None,
    fail_on_difference: bool = True,
    deep: bool = False,
    live_sync_queue: str | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = PART_SIZE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
    target_kms_key: str | None = None,
    all_versions: bool = False,
) -> BucketReport:
    """`target_kms_key`: copies not encrypted with it are differences, which `repair` re-encrypts.
    `all_versions`: compare every key's history (ferry/s3/versions.py), with the version-ID map in
    `report_dir`."""
    job = BucketJob(source=source, target=target, prefix=prefix, delete=delete,
                    multipart_threshold=multipart_threshold, part_size=part_size,
                    source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    all_versions=all_versions)
    if all_versions:
        report = verify_object_versions(job, repair=repair, report_dir=report_dir, deep=deep,
                                        live_sync_queue=live_sync_queue)
    else:
        report = verify_bucket_task(job, repair=repair, report_dir=report_dir, deep=deep,
                                    live_sync_queue=live_sync_queue)
    if fail_on_difference and not report.equal:
        raise DifferencesRemain(f"{report.count('missing')} missing, {report.count('extra')} extra, "
                                f"{report.count('changed')} changed in {target}")
    return report
