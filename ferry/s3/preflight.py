"""Bucket preflight: every check that bad input can fail, reading only."""

from __future__ import annotations

from botocore.exceptions import ClientError

from ferry.config import BucketJob
from ferry.errors import BadInput, denied_line
from ferry.iam import QueueRef, bucket_source_statements, bucket_target_statements
from ferry.permissions import caller_or_none, check_allowed, simulator
from ferry.s3 import events


def event_queues(job: BucketJob, region: str, account: str) -> list[QueueRef]:
    """The pair's event queue and its dead-letter queue, in the source's account and region."""
    return [QueueRef(region, account, name) for name in events.queue_names(job.source, job.target)]


def check_permissions(job: BucketJob, source_s3) -> None:
    """Every action of this migration on both sides, on the exact ARNs, through IAM's simulator."""
    command = f"ferry iam-policy bucket {job.source} {job.target}" + (f" --prefix {job.prefix}" if job.prefix else "")
    if source_who := caller_or_none(job.source_aws, "source"):
        queues = event_queues(job, source_s3.meta.region_name, source_who.account)
        check_allowed(simulator(job.source_aws), "source", source_who,
                      bucket_source_statements(job.source, job.prefix, queues, job.all_versions), command)
    if target_who := caller_or_none(job.target_aws, "target"):
        check_allowed(simulator(job.target_aws), "target", target_who,
                      bucket_target_statements(job.source, job.target, job.prefix, source_s3.meta.region_name,
                                               job.all_versions),
                      command)


def require_bucket(s3, bucket: str, side: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "403" and (line := denied_line(error)):  # HeadBucket: s3:ListBucket
            raise BadInput(f"{side} bucket {bucket!r}: {line}") from None
        reason = "does not exist" if code in ("404", "NoSuchBucket") else f"is not accessible ({code})"
        raise BadInput(f"{side} bucket {bucket!r} {reason}: check the name, --{side}-profile and --{side}-region")


def check_bucket_job(job: BucketJob, source_s3, target_s3) -> None:
    if job.source == job.target:  # bucket names are global: whatever the profiles or regions, one bucket
        raise BadInput(f"source and target are the same bucket {job.source!r}: name a different target")
    check_permissions(job, source_s3)
    require_bucket(source_s3, job.source, "source")
    require_bucket(target_s3, job.target, "target")
    if job.all_versions:
        from ferry.s3.versions import check_versioning

        check_versioning(source_s3, target_s3, job.source, job.target)
    if problem := events.clash(job.source, source_s3.get_bucket_notification_configuration(Bucket=job.source)):
        raise BadInput(problem)


def empty_prefix_warning(job: BucketJob, source_s3) -> str | None:
    """A prefix under which the source has no object yet is allowed (live sync copies what comes),
    but is more often a typo: say so."""
    if job.prefix and not source_s3.list_objects_v2(Bucket=job.source, Prefix=job.prefix, MaxKeys=1).get("KeyCount"):
        return (f"no objects under prefix {job.prefix!r} in bucket {job.source!r} yet: check the prefix "
                "(live sync will copy what is written there from now on)")
    return None
