"""Deploy the bucket live-sync Lambda: the bucket's event queue -> lambdas/s3_handler -> target bucket.

The queue already exists (enable_bucket_events) with its dead-letter queue behind it; the function
takes it through an SQS event source mapping with partial batch failure reporting, so a failing key
is retried alone and, after the queue's redrive limit, dead-lettered. The role may: consume this one
queue; HEAD/GET objects and tags of the source (and list it, so a missing key reads as 404 rather
than 403); HEAD, put, tag and delete objects in the target (and list it and its uploads); read and
carry Object Lock retention and legal holds; with a target KMS key, encrypt with it; write its own
log group. S3 object actions need an object ARN pattern (`bucket/prefix*`), the one place a policy
here holds a wildcard. What every copy carries (lambdas/s3_copy.CopySettings) reaches the function
as environment variables (TARGET_KMS_KEY, OBJECT_LOCK).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from ferry.dynamo.lambda_sync import ROLE_POLICY, LiveSyncDeployment, ensure_function, ensure_log_group, ensure_role, \
    package, resource_name
from ferry.iam import LOCK_READ, LOCK_WRITE, SOURCE_VERSIONS, TARGET_VERSIONS
from lambdas.s3_copy import PLAIN, CopySettings

HANDLER = "lambdas.s3_handler.handler"
BATCH_SIZE = 10
FUNCTION_TIMEOUT_SECONDS = 300  # AWS requires the queue's visibility timeout to be at least this (events.py)


def execution_policy(queue_arn: str, source: str, target: str, prefix: str, log_group_arn: str,
                     target_key_arn: str | None = None, all_versions: bool = False) -> dict:
    """`all_versions`: the handler lists both histories, reads versions by ID and deletes the
    target's out-of-place versions by theirs (lambdas/s3_versions.py)."""
    key = [{"Sid": "TargetKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [target_key_arn]}] if target_key_arn else []
    versions = {"list": ["s3:ListBucketVersions"], "read": SOURCE_VERSIONS, "write": TARGET_VERSIONS} \
        if all_versions else {}
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ConsumeEventQueue", "Effect": "Allow",  # TagQueue, GetQueueUrl: it leaves its lag on the queue
         "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
                    "sqs:TagQueue"], "Resource": [queue_arn]},
        {"Sid": "ListSource", "Effect": "Allow", "Action": ["s3:ListBucket", *versions.get("list", [])],
         "Resource": [f"arn:aws:s3:::{source}"]},
        {"Sid": "ReadSourceObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectAcl", *LOCK_READ, *versions.get("read", [])],
         "Resource": [f"arn:aws:s3:::{source}/{prefix}*"]},
        {"Sid": "ListTarget", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads", *versions.get("list", [])],
         "Resource": [f"arn:aws:s3:::{target}"]},
        {"Sid": "WriteTargetObjects", "Effect": "Allow",  # GetObject: the handler HEADs the target to compare
         "Action": ["s3:GetObject", "s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging",
                    "s3:DeleteObjectTagging", "s3:DeleteObject",
                    "s3:AbortMultipartUpload", "s3:GetObjectAcl", "s3:PutObjectAcl", *LOCK_READ, *LOCK_WRITE,
                    *versions.get("write", [])],
         "Resource": [f"arn:aws:s3:::{target}/{prefix}*"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"]},  # PutLogEvents acts on the stream
        *key,
    ]}


def deploy(iam, lambda_client, logs, *, source: str, target: str, prefix: str, queue_arn: str,
           dead_letter_queue_arn: str, settings: CopySettings = PLAIN, all_versions: bool = False
           ) -> LiveSyncDeployment:
    """Create or update the function, its role and its queue mapping (enabled: events are hints, so
    applying them during the bulk copy is harmless)."""
    name = resource_name(source, target, "-s3")
    account = queue_arn.split(":")[4]
    log_group_arn = ensure_log_group(logs, lambda_client.meta.region_name, account, name)
    role_arn = ensure_role(iam, name, execution_policy(queue_arn, source, target, prefix, log_group_arn,
                                                       settings.target_kms_key, all_versions))
    environment = {"TARGET_BUCKET": target, **({"PREFIX": prefix} if prefix else {}), **settings.environment(),
                   **({"ALL_VERSIONS": "true"} if all_versions else {})}
    function_arn = ensure_function(lambda_client, name, role_arn, environment, package(),
                                   handler=HANDLER, description="Ferry live sync (S3 events -> target bucket)",
                                   timeout=FUNCTION_TIMEOUT_SECONDS)
    settings = {"BatchSize": BATCH_SIZE, "MaximumBatchingWindowInSeconds": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    existing = lambda_client.list_event_source_mappings(FunctionName=name, EventSourceArn=queue_arn)["EventSourceMappings"]
    if existing:
        uuid = existing[0]["UUID"]
        lambda_client.update_event_source_mapping(UUID=uuid, FunctionName=name, **settings)
    else:
        uuid = lambda_client.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, Enabled=True,
                                                         **settings)["UUID"]
    return LiveSyncDeployment(name, function_arn, role_arn, dead_letter_queue_arn, uuid)


def remove(iam, lambda_client, *, source: str, target: str, queue_arn: str) -> list[str]:
    """Remove what `deploy` made for the pair: the queue's mappings (no new invocation), the
    function, then its role (no invocation left to need it). Its log group stays (it holds the
    function's logs). Idempotent; a pair synced by the poller has no function (and its operator
    perhaps no right to ask: a refusal counts as nothing to remove). Returns what was removed."""
    name = resource_name(source, target, "-s3")
    removed = []
    for mapping in lambda_client.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]:
        lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
        removed.append(f"event source mapping {mapping['UUID']}")
    absent = ("ResourceNotFoundException", "NoSuchEntity")
    if not removed:  # no mapping: a poller's pair (or a rerun), whose operator may not ask about functions
        absent += ("AccessDenied", "AccessDeniedException", "403")
    for what, delete in ((f"Lambda function {name}", lambda: lambda_client.delete_function(FunctionName=name)),
                         (None, lambda: iam.delete_role_policy(RoleName=name, PolicyName=ROLE_POLICY)),
                         (f"IAM role {name}", lambda: iam.delete_role(RoleName=name))):
        try:  # each on its own: a rerun after a kill finds what is left (none of it, for a poller's pair,
            delete()  # whose operator may not even ask)
        except ClientError as error:
            if error.response["Error"]["Code"] not in absent:
                raise
            continue
        if what:
            removed.append(what)
    return removed
