"""Bucket preflight: every check that bad input can fail, reading only.

It also decides what every copy carries (lambdas/s3_copy.CopySettings): the target KMS key,
resolved to its ARN (the id the target's HEADs show, so the one rule can compare it), and whether
the source has Object Lock (then the target must have it too).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from ferry.aws import client
from ferry.config import BucketJob
from ferry.errors import BadInput, denied_line
from ferry.iam import QueueRef, bucket_source_statements, bucket_target_statements
from ferry.permissions import caller_or_none, check_allowed, simulator
from ferry.s3 import events, routes
from lambdas.s3_copy import CopySettings


def event_queues(job: BucketJob, region: str, account: str) -> list[QueueRef]:
    """The pair's event queue and its dead-letter queue, in the source's account and region."""
    return [QueueRef(region, account, name) for name in events.queue_names(job.source, job.target)]


def check_permissions(job: BucketJob, source_s3, target_key_arn: str | None = None) -> None:
    """Every action of this migration on both sides, on the exact ARNs, through IAM's simulator."""
    command = (f"ferry iam-policy bucket {job.source} {job.target}" + (f" --prefix {job.prefix}" if job.prefix else "")
               + (f" --target-kms-key {job.target_kms_key}" if job.target_kms_key else "")
               + (f" --restore {job.restore_days}" if job.restore_days else ""))
    if source_who := caller_or_none(job.source_aws, "source"):
        queues = event_queues(job, source_s3.meta.region_name, source_who.account)
        check_allowed(simulator(job.source_aws), "source", source_who,
                      bucket_source_statements(job.source, job.prefix, queues,
                                               routes.route_name(job.source, job.target),
                                               restore=bool(job.restore_days), all_versions=job.all_versions),
                      command)
    if target_who := caller_or_none(job.target_aws, "target"):
        check_allowed(simulator(job.target_aws), "target", target_who,
                      bucket_target_statements(job.source, job.target, job.prefix, source_s3.meta.region_name,
                                               target_key_arn, job.all_versions), command)


def target_key_arn(kms, key: str) -> str:
    """The ARN of the target KMS key `key` (an id, alias/NAME or ARN), once it is known to be usable
    for S3 encryption by the target side: enabled, symmetric, ENCRYPT_DECRYPT. Else one BadInput line
    naming the key."""
    try:
        found = kms.describe_key(KeyId=key)["KeyMetadata"]
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("NotFoundException", "InvalidArnException"):
            raise BadInput(f"target KMS key {key!r} does not exist in the target's account and region: check the "
                           "key id, alias/NAME or ARN (and --target-region)") from None
        if line := denied_line(error):
            raise BadInput(f"target KMS key {key!r}: {line}") from None
        raise
    if found["KeyState"] != "Enabled":
        raise BadInput(f"target KMS key {key!r} is {found['KeyState']}, not Enabled: enable it or name another key")
    usage, spec = found.get("KeyUsage", "ENCRYPT_DECRYPT"), found.get("KeySpec", "SYMMETRIC_DEFAULT")
    if usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
        raise BadInput(f"target KMS key {key!r} is a {spec} {usage} key: S3 encrypts with symmetric "
                       "ENCRYPT_DECRYPT keys only, name one")
    return found["Arn"]


def object_lock_enabled(s3, bucket: str, side: str) -> bool:
    try:
        configuration = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ObjectLockConfigurationNotFoundError":
            return False
        if line := denied_line(error):
            raise BadInput(f"{side} bucket {bucket!r}: {line}") from None
        raise
    return configuration.get("ObjectLockEnabled") == "Enabled"


def object_lock_required(job: BucketJob, source_s3, target_s3) -> bool:
    """Whether the source has Object Lock; if so the target must have it too, or its copies could not
    keep any object's retention or legal hold: refused before anything is written."""
    if not object_lock_enabled(source_s3, job.source, "source"):
        return False
    if not object_lock_enabled(target_s3, job.target, "target"):
        raise BadInput(f"source bucket {job.source!r} has Object Lock and target bucket {job.target!r} does not, so "
                       "its objects' retention and legal holds could not be kept: enable Object Lock on the target "
                       "(versioning on, then put-object-lock-configuration) or choose a target that has it")
    return True


def acls_enabled(s3, bucket: str, side: str) -> bool:
    """Whether the bucket's object ACLs are in force (not Bucket owner enforced, S3's default for
    buckets made since April 2023)."""
    try:
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("OwnershipControlsNotFoundError", "NoSuchOwnershipControls"):
            return True  # an older bucket: ACLs as they always were
        if line := denied_line(error):
            raise BadInput(f"{side} bucket {bucket!r}: {line}") from None
        raise
    return not any(rule.get("ObjectOwnership") == "BucketOwnerEnforced" for rule in rules)


def copies_carry_acls(job: BucketJob, source_s3, target_s3) -> bool:
    """Copies get their source's grants only where both buckets' ACLs are in force: a source
    without them has none to give, a target without them could hold none (one GetObjectAcl per copy
    spent for nothing)."""
    return acls_enabled(source_s3, job.source, "source") and acls_enabled(target_s3, job.target, "target")


def copy_settings(job: BucketJob, source_s3, target_s3, kms=None) -> CopySettings:
    """What every copy of this migration carries, read now (the checks above; no write)."""
    key_arn = target_key_arn(kms or client(job.target_aws, "kms"), job.target_kms_key) if job.target_kms_key else None
    return CopySettings(key_arn, object_lock_required(job, source_s3, target_s3),
                        copies_carry_acls(job, source_s3, target_s3))


def require_bucket(s3, bucket: str, side: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "403" and (line := denied_line(error)):  # HeadBucket: s3:ListBucket
            raise BadInput(f"{side} bucket {bucket!r}: {line}") from None
        reason = "does not exist" if code in ("404", "NoSuchBucket") else f"is not accessible ({code})"
        raise BadInput(f"{side} bucket {bucket!r} {reason}: check the name, --{side}-profile and --{side}-region")


def check_bucket_job(job: BucketJob, source_s3, target_s3, kms=None) -> CopySettings:
    """Every read-only check of `ferry bucket`; returns what its copies carry."""
    if job.source == job.target:  # bucket names are global: whatever the profiles or regions, one bucket
        raise BadInput(f"source and target are the same bucket {job.source!r}: name a different target")
    key_arn = target_key_arn(kms or client(job.target_aws, "kms"), job.target_kms_key) if job.target_kms_key else None
    check_permissions(job, source_s3, key_arn)
    require_bucket(source_s3, job.source, "source")
    require_bucket(target_s3, job.target, "target")
    settings = CopySettings(key_arn, object_lock_required(job, source_s3, target_s3),
                            copies_carry_acls(job, source_s3, target_s3))
    if job.all_versions:
        from ferry.s3.versions import check_versioning

        check_versioning(source_s3, target_s3, job.source, job.target)
    check_route(job, source_s3)
    return settings


def check_route(job: BucketJob, source_s3) -> None:
    """`--events notification` where an entry already takes the events Ferry needs: S3 would refuse
    the pair's entry (auto, the default, takes EventBridge then; ferry/s3/routes.py)."""
    if job.events != routes.NOTIFICATION:
        return
    configuration = routes.read_configuration(source_s3, job.source)
    queue_arn = f"arn:aws:sqs:{source_s3.meta.region_name}:-:{events.queue_names(job.source, job.target)[0]}"
    if clashes := routes.overlapping(configuration, routes.notification_entry(job.source, job.target, queue_arn,
                                                                              job.prefix)):
        raise BadInput(routes.refusal(job.source, clashes))


def empty_prefix_warning(job: BucketJob, source_s3) -> str | None:
    """A prefix under which the source has no object yet is allowed (live sync copies what comes),
    but is more often a typo: say so."""
    if job.prefix and not source_s3.list_objects_v2(Bucket=job.source, Prefix=job.prefix, MaxKeys=1).get("KeyCount"):
        return (f"no objects under prefix {job.prefix!r} in bucket {job.source!r} yet: check the prefix "
                "(live sync will copy what is written there from now on)")
    return None
