"""The least IAM policy the operator running `ferry table` or `ferry bucket` needs, scoped to the exact ARNs.

One place lists every action each step of a migration calls, grouped by what it touches: for a
table, the source table and its stream, the target table (and its indexes), the state table; for a
bucket, the source bucket and its objects under the prefix, the pair's event queues, the target
bucket and its objects. `ferry iam-policy table|bucket` prints it, ready for `aws iam put-role-policy
--policy-document`; tests/test_iam.py runs whole migrations on moto's server with IAM enforced as a
user holding exactly this policy, and ferry/permissions.py checks these same statements with IAM's
policy simulator before a run writes.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "2012-10-17"


def partition(region: str) -> str:
    """The ARN partition of a region: aws, aws-cn (cn-*), aws-us-gov (us-gov-*)."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


@dataclass(frozen=True)
class TableRef:
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:{partition(self.region)}:dynamodb:{self.region}:{self.account}:table/{self.name}"


SOURCE_READ = ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem",
               "dynamodb:DescribeTimeToLive"]  # the TTL attribute: verification leaves out what expired
SOURCE_CLONE = ["dynamodb:ListTagsOfResource", "dynamodb:DescribeContinuousBackups"]  # --create-target copies them
SOURCE_STREAM_ON = ["dynamodb:UpdateTable"]  # enables the stream (NEW_AND_OLD_IMAGES)
STREAM_READ = ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"]
TARGET_WRITE = ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem",
                "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                "dynamodb:DescribeTimeToLive"]
TARGET_CREATE = ["dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:TagResource", "dynamodb:ListTagsOfResource",
                 "dynamodb:UpdateTimeToLive", "dynamodb:DescribeTimeToLive", "dynamodb:UpdateContinuousBackups",
                 "dynamodb:DescribeContinuousBackups"]
STATE_TABLE = ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem",
               "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan"]


@dataclass(frozen=True)
class QueueRef:
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:{partition(self.region)}:sqs:{self.region}:{self.account}:{self.name}"


# GetBucketObjectLockConfiguration: preflight reads whether the source has Object Lock (then the target too)
SOURCE_BUCKET = ["s3:ListBucket", "s3:GetBucketNotification", "s3:PutBucketNotification",
                 "s3:GetBucketObjectLockConfiguration",
                 "s3:GetBucketOwnershipControls"]  # are its ACLs enabled (then copies carry grants)
# A HEAD shows an object's Object Lock retention and legal hold only to a caller with these: without
# them a copy would silently leave the lock behind. Harmless on buckets without Object Lock.
LOCK_READ = ["s3:GetObjectRetention", "s3:GetObjectLegalHold"]
LOCK_WRITE = ["s3:PutObjectRetention", "s3:PutObjectLegalHold"]  # a copy that carries them (Object Lock targets only)
# HEAD and copy sources, tags copied with them; ACLs compared by live sync
SOURCE_OBJECTS = ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectAcl", *LOCK_READ]
SOURCE_RESTORE = ["s3:RestoreObject"]  # `--restore`: archived source objects brought back
TARGET_KEY = ["kms:DescribeKey", "kms:GenerateDataKey", "kms:Decrypt"]  # `--target-kms-key`: copies encrypted with it
EVENT_QUEUES = ["sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
                "sqs:TagQueue", "sqs:UntagQueue", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility", "sqs:DeleteQueue"]  # DeleteQueue: ferry finish bucket
TARGET_BUCKET = ["s3:ListBucket", "s3:ListBucketMultipartUploads",  # listings; incomplete copies to abort
                 "s3:GetBucketObjectLockConfiguration", "s3:GetBucketOwnershipControls"]
TARGET_OBJECTS = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging",
                  "s3:DeleteObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:GetObjectAcl", "s3:PutObjectAcl",
                  *LOCK_READ, *LOCK_WRITE]
EVENT_RULE = ["events:PutRule", "events:DescribeRule", "events:DeleteRule", "events:PutTargets",
              "events:RemoveTargets", "events:ListTargetsByRule", "events:TagResource", "events:ListTagsForResource"]
# --all-versions: histories listed on both sides (and the versioning checked), versions read by their ID,
# a target's out-of-place versions deleted by theirs (lambdas/s3_versions.py), the current version's
# tags and grants read and written by its ID (lambdas/s3_attributes.py)
VERSIONED_BUCKET = ["s3:ListBucketVersions", "s3:GetBucketVersioning"]
SOURCE_VERSIONS = ["s3:GetObjectVersion", "s3:GetObjectVersionTagging", "s3:GetObjectVersionAcl"]
TARGET_VERSIONS = ["s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:GetObjectVersionTagging",
                   "s3:PutObjectVersionTagging", "s3:DeleteObjectVersionTagging", "s3:GetObjectVersionAcl",
                   "s3:PutObjectVersionAcl"]


def statement(sid: str, actions: list[str], resources: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources}


def table_source_statements(source: TableRef, create_target: bool = False) -> list[dict]:
    """What the source side's credentials need: read the table (its tags and backup setting too, to
    clone it), enable and read its stream. Ferry finds the stream through DescribeTable: no
    ListStreams on "*"."""
    return [
        statement("ReadSource", SOURCE_READ + (SOURCE_CLONE if create_target else []), [source.arn]),
        statement("EnableSourceStream", SOURCE_STREAM_ON, [source.arn]),
        statement("ReadSourceStream", STREAM_READ, [f"{source.arn}/stream/*"]),
    ]


def table_target_statements(target: TableRef, state: TableRef, create_target: bool) -> list[dict]:
    """What the target side's credentials need: write the target (create it too, with
    --create-target), keep the state table."""
    return [
        statement("WriteTarget", TARGET_WRITE + (TARGET_CREATE if create_target else []),
                  [target.arn, f"{target.arn}/index/*"]),
        state_table_statement(state),
    ]


def state_table_statement(state: TableRef, sid: str = "StateTable") -> dict:
    """Ferry's own table of checkpoints, leases and records (created on first use)."""
    return statement(sid, STATE_TABLE, [state.arn])


def policy(statements: list[dict]) -> dict:
    return {"Version": VERSION, "Statement": statements}


def table_operator_policy(source: TableRef, target: TableRef, state: TableRef, create_target: bool) -> dict:
    """The operator's policy for `ferry table SOURCE TARGET` with the local poller (and `verify`,
    `sync table`, `status`): both sides' statements in one document."""
    return policy(table_source_statements(source, create_target)
                  + table_target_statements(target, state, create_target))


def bucket_arn(bucket: str, region: str) -> str:
    return f"arn:{partition(region)}:s3:::{bucket}"


def objects_arn(bucket: str, prefix: str, region: str) -> str:
    return f"{bucket_arn(bucket, region)}/{prefix}*"


def bucket_source_statements(source: str, prefix: str, queues: list[QueueRef], rule: str,
                             restore: bool = False, all_versions: bool = False) -> list[dict]:
    """What the source side's credentials need: list the bucket, route its events to the pair's
    queue (and its dead-letter queue) by a notification entry or the pair's EventBridge rule `rule`
    (ferry/s3/routes.py: it reads other Ferry rules' tags and lists the bus's rules to leave what
    others use), read the objects under the prefix (with `restore`, restore archived ones; with
    `all_versions`, list and read its versions too), consume the queue."""
    region, account = queues[0].region, queues[0].account
    rules = f"arn:{partition(region)}:events:{region}:{account}:rule/"
    bucket_actions = SOURCE_BUCKET + (VERSIONED_BUCKET if all_versions else [])
    object_actions = SOURCE_OBJECTS + (SOURCE_RESTORE if restore else []) + (SOURCE_VERSIONS if all_versions else [])
    return [
        statement("ReadSourceBucket", bucket_actions, [bucket_arn(source, region)]),
        statement("ReadSourceObjects", object_actions, [objects_arn(source, prefix, region)]),
        statement("EventQueues", EVENT_QUEUES, [queue.arn for queue in queues]),
        statement("EventRule", EVENT_RULE, [rules + rule]),
        statement("OtherFerryRules", ["events:ListTagsForResource"], [rules + "ferry-sync-*"]),
        statement("ListEventRules", ["events:ListRules"], ["*"]),  # no resource-level form
        statement("LiveSyncStatus", ["lambda:ListEventSourceMappings"], ["*"]),  # no resource-level form
    ]


def bucket_target_statements(source: str, target: str, prefix: str, region: str,
                             target_key_arn: str | None = None, all_versions: bool = False) -> list[dict]:
    """What the target side's credentials need: list and write the target under the prefix, and read
    the source objects (a copy is a request to the target that reads the source: across accounts the
    source bucket's policy must also allow it); with a target key, encrypt with it; with
    `all_versions`, the versions of both (live sync lists the source's histories with these
    credentials too). Source objects under a KMS key of their own also need kms:Decrypt on that key,
    which Ferry cannot name."""
    copy_from = SOURCE_OBJECTS  # the source's ACL too: copies and live sync carry its grants
    statements = [
        statement("WriteTargetBucket", TARGET_BUCKET + (VERSIONED_BUCKET if all_versions else []),
                  [bucket_arn(target, region)]),
        statement("WriteTargetObjects", TARGET_OBJECTS + (TARGET_VERSIONS if all_versions else []),
                  [objects_arn(target, prefix, region)]),
        statement("CopyFromSource", copy_from + (SOURCE_VERSIONS if all_versions else []),
                  [objects_arn(source, prefix, region)]),
    ]
    if all_versions:
        statements.append(statement("ListSourceVersions", ["s3:ListBucketVersions"], [bucket_arn(source, region)]))
    return statements + ([statement("TargetKey", TARGET_KEY, [target_key_arn])] if target_key_arn else [])


def key_arn(key: str, region: str, account: str, kms=None) -> str:
    """A KMS key's ARN for a policy: an ARN as given, a key id in the target's account and region,
    an alias resolved by `kms` (IAM grants a key's use on the key's ARN, never an alias's)."""
    if key.startswith("arn:") and ":key/" in key:
        return key
    if not key.startswith(("alias/", "arn:")):
        return f"arn:{partition(region)}:kms:{region}:{account}:key/{key}"
    from ferry.s3.preflight import target_key_arn

    return target_key_arn(kms, key)


def live_sync_lambda(source: TableRef, target: TableRef, state: TableRef, target_role_arn: str | None = None
                     ) -> tuple[list[dict], dict]:
    """With --live-sync lambda: the operator's statements to deploy the function (beside the source),
    and the policy Ferry attaches to the function's own role (the one ferry/dynamo/lambda_sync.py
    puts, its stream scoped to the source's streams: the stream's ARN is only known once enabled)."""
    from ferry.dynamo.lambda_sync import execution_policy, resource_name

    name = resource_name(source.name, target.name)
    dead_letters = QueueRef(source.region, source.account, resource_name(source.name, target.name, "-dlq"))
    log_group = log_group_arn(source.region, source.account, name)
    deploy = lambda_deploy_statements(name, source.region, source.account) + [
        statement("LiveSyncDeadLetters", ["sqs:CreateQueue", "sqs:GetQueueAttributes"], [dead_letters.arn])]
    role = execution_policy(f"{source.arn}/stream/*", source.arn, target.arn, dead_letters.arn, log_group,
                            target_role_arn, state.arn)
    return deploy, role


def log_group_arn(region: str, account: str, function: str) -> str:
    return f"arn:{partition(region)}:logs:{region}:{account}:log-group:/aws/lambda/{function}"


def lambda_deploy_statements(name: str, region: str, account: str) -> list[dict]:
    """Deploying a live-sync function named `name` beside the source: its role, the function, its
    event source mapping and its log group."""
    aws = partition(region)
    return [
        statement("LiveSyncRole", ["iam:CreateRole", "iam:GetRole", "iam:PutRolePolicy", "iam:PassRole",
                                   "iam:DeleteRolePolicy", "iam:DeleteRole"],  # Delete*: ferry finish bucket
                  [f"arn:{aws}:iam::{account}:role/{name}"]),
        statement("LiveSyncFunction", ["lambda:CreateFunction", "lambda:GetFunction", "lambda:UpdateFunctionCode",
                                       "lambda:UpdateFunctionConfiguration", "lambda:DeleteFunction"],
                  [f"arn:{aws}:lambda:{region}:{account}:function:{name}"]),
        statement("LiveSyncMapping", ["lambda:CreateEventSourceMapping", "lambda:UpdateEventSourceMapping",
                                      "lambda:ListEventSourceMappings", "lambda:DeleteEventSourceMapping"],
                  ["*"]),  # no resource-level form
        statement("LiveSyncLogs", ["logs:CreateLogGroup"], [log_group_arn(region, account, name)]),
    ]


def bucket_live_sync_lambda(source: str, target: str, prefix: str, queue: QueueRef,
                            target_key_arn: str | None = None, all_versions: bool = False) -> tuple[list[dict], dict]:
    """With --live-sync lambda for a bucket: deploying the function that consumes the pair's queue,
    and the policy Ferry attaches to its role (ferry/s3/lambda_sync.py)."""
    from ferry.dynamo.lambda_sync import resource_name
    from ferry.s3.lambda_sync import execution_policy

    name = resource_name(source, target, "-s3")
    return (lambda_deploy_statements(name, queue.region, queue.account),
            execution_policy(queue.arn, source, target, prefix, log_group_arn(queue.region, queue.account, name),
                             target_key_arn, all_versions))


def parameter_arn(region: str, account: str, name: str) -> str:
    return f"arn:{partition(region)}:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def cutover_statements(parameters: list[str], region: str, account: str) -> list[dict]:
    """A plan's cutover and rollback: the service's parameters read, switched and restored (deleted
    where they did not exist), the live-sync Lambdas' mappings paused and resumed."""
    return [
        statement("CutoverParameters", ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"],
                  [parameter_arn(region, account, name) for name in parameters]),
        statement("CutoverLiveSyncMappings", ["lambda:ListEventSourceMappings", "lambda:UpdateEventSourceMapping"],
                  ["*"]),  # no resource-level form for listing
    ] if parameters else []


def numbered(statements: list[dict], n: int) -> list[dict]:
    """One pair's statements with Sids of their own inside a plan's policy."""
    return [{**s, "Sid": f"{s['Sid']}{n}"} for s in statements]
