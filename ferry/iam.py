"""The least IAM policy the operator running `ferry table` needs, scoped to the exact ARNs.

One place lists every action each step of a table migration calls, grouped by what it touches: the
source table and its stream, the target table (and its indexes), the state table. `ferry iam-policy
table` prints it, ready for `aws iam put-role-policy --policy-document`; tests/test_iam.py runs a
whole migration on moto's server with IAM enforced as a user holding exactly this policy.
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


def statement(sid: str, actions: list[str], resources: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources}


def table_operator_policy(source: TableRef, target: TableRef, state: TableRef, create_target: bool) -> dict:
    """The operator's policy for `ferry table SOURCE TARGET` with the local poller (and `verify`,
    `sync table`, `status`). Ferry finds the stream through DescribeTable: no ListStreams on "*"."""
    statements = [
        statement("ReadSource", SOURCE_READ, [source.arn]),
        statement("EnableSourceStream", SOURCE_STREAM_ON, [source.arn]),
        statement("ReadSourceStream", STREAM_READ, [f"{source.arn}/stream/*"]),
        statement("WriteTarget", TARGET_WRITE + (TARGET_CREATE if create_target else []),
                  [target.arn, f"{target.arn}/index/*"]),
        statement("StateTable", STATE_TABLE, [state.arn]),
    ]
    return {"Version": VERSION, "Statement": statements}
