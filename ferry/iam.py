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


@dataclass(frozen=True)
class TableRef:
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.name}"


SOURCE_READ = ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem",
               "dynamodb:ListTagsOfResource", "dynamodb:DescribeTimeToLive", "dynamodb:DescribeContinuousBackups"]
SOURCE_STREAM_ON = ["dynamodb:UpdateTable"]  # enables the stream (NEW_AND_OLD_IMAGES)
STREAM_READ = ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"]
TARGET_WRITE = ["dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:BatchGetItem",
                "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
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
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"


SOURCE_BUCKET = ["s3:ListBucket", "s3:GetBucketNotification", "s3:PutBucketNotification"]
SOURCE_OBJECTS = ["s3:GetObject", "s3:GetObjectTagging"]  # HEAD and copy sources, tags copied with them
EVENT_QUEUES = ["sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
                "sqs:TagQueue", "sqs:UntagQueue", "sqs:ListQueueTags", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility"]
TARGET_BUCKET = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]  # listings; incomplete copies to abort
TARGET_OBJECTS = ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging",
                  "s3:DeleteObject", "s3:AbortMultipartUpload"]


def statement(sid: str, actions: list[str], resources: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources}


def table_source_statements(source: TableRef) -> list[dict]:
    """What the source side's credentials need: read the table, enable and read its stream.
    Ferry finds the stream through DescribeTable: no ListStreams on "*"."""
    return [
        statement("ReadSource", SOURCE_READ, [source.arn]),
        statement("EnableSourceStream", SOURCE_STREAM_ON, [source.arn]),
        statement("ReadSourceStream", STREAM_READ, [f"{source.arn}/stream/*"]),
    ]


def table_target_statements(target: TableRef, state: TableRef, create_target: bool) -> list[dict]:
    """What the target side's credentials need: write the target (create it too, with
    --create-target), keep the state table."""
    return [
        statement("WriteTarget", TARGET_WRITE + (TARGET_CREATE if create_target else []),
                  [target.arn, f"{target.arn}/index/*"]),
        statement("StateTable", STATE_TABLE, [state.arn]),
    ]


def policy(statements: list[dict]) -> dict:
    return {"Version": VERSION, "Statement": statements}


def table_operator_policy(source: TableRef, target: TableRef, state: TableRef, create_target: bool) -> dict:
    """The operator's policy for `ferry table SOURCE TARGET` with the local poller (and `verify`,
    `sync table`, `status`): both sides' statements in one document."""
    return policy(table_source_statements(source) + table_target_statements(target, state, create_target))


def objects_arn(bucket: str, prefix: str) -> str:
    return f"arn:aws:s3:::{bucket}/{prefix}*"


def bucket_source_statements(source: str, prefix: str, queues: list[QueueRef]) -> list[dict]:
    """What the source side's credentials need: list the bucket, route its events to the pair's
    queue (and its dead-letter queue), read the objects under the prefix, consume the queue."""
    return [
        statement("ReadSourceBucket", SOURCE_BUCKET, [f"arn:aws:s3:::{source}"]),
        statement("ReadSourceObjects", SOURCE_OBJECTS, [objects_arn(source, prefix)]),
        statement("EventQueues", EVENT_QUEUES, [queue.arn for queue in queues]),
        statement("LiveSyncStatus", ["lambda:ListEventSourceMappings"], ["*"]),  # no resource-level form
    ]


def bucket_target_statements(source: str, target: str, prefix: str) -> list[dict]:
    """What the target side's credentials need: list and write the target under the prefix, and read
    the source objects (a copy is a request to the target that reads the source: across accounts the
    source bucket's policy must also allow it)."""
    return [
        statement("WriteTargetBucket", TARGET_BUCKET, [f"arn:aws:s3:::{target}"]),
        statement("WriteTargetObjects", TARGET_OBJECTS, [objects_arn(target, prefix)]),
        statement("CopyFromSource", SOURCE_OBJECTS, [objects_arn(source, prefix)]),
    ]
