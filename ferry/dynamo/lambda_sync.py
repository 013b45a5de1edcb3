"""Deploy the live-sync Lambda: source stream -> handler in lambdas/ -> target table.

Idempotent: a rerun updates the code, configuration and policy instead of failing. The event source
mapping is created disabled at TRIM_HORIZON of the stream enabled before the backfill, and enabled
right after the deployment: the Lambda applies changes beside the backfill, through the write rule,
noting what it writes in the migration's journal (lambdas/journal.py) so the backfill in another
process can respect it. Failed records go, after retries and bisection, to a dead-letter queue; a
poison record never blocks its shard.

The execution role may do exactly this and nothing else (no wildcard in any action, and in
resources only for this function's own log streams): read this one stream, get items from the
source (for streams without new images), write this one target table (or assume the configured
target-side role), keep its journal in the migration's state table, send to this one dead-letter
queue, and write to this function's log group (which Ferry creates, so the role need not).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from ferry.dynamo.stream import last_changes_before
from ferry.names import pair_name
from ferry.errors import CannotContinue
from ferry.state import StateStore
from lambdas import journal
from lambdas.dynamo_apply import key_identity

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "lambdas"
HANDLER = "lambdas.dynamo_handler.handler"
RUNTIME = "python3.12"
BATCH_SIZE = 100
BATCH_WINDOW_SECONDS = 1
MAX_RETRY_ATTEMPTS = 10
MAX_RECORD_AGE_SECONDS = 86_400  # the stream's own retention


@dataclass
class LiveSyncDeployment:
    function_name: str
    function_arn: str
    role_arn: str
    dead_letter_queue_arn: str
    mapping_uuid: str


def resource_name(source: str, target: str, suffix: str = "") -> str:
    """ferry-sync-SOURCE-TARGET (ferry/names.py), within Lambda's and IAM's 64-character limits."""
    return pair_name(source, target, 64 - len(suffix)) + suffix


def package() -> bytes:
    """The zip Lambda runs: the lambdas/ package alone (stdlib + boto3 only)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(LAMBDAS_DIR.rglob("*.py")):
            archive.write(path, f"lambdas/{path.relative_to(LAMBDAS_DIR)}")
    return buffer.getvalue()


def execution_policy(stream_arn: str, source_table_arn: str, target_table_arn: str, dead_letter_queue_arn: str,
                     log_group_arn: str, target_role_arn: str | None = None, state_table_arn: str | None = None) -> dict:
    write_target = (
        {"Sid": "AssumeTargetRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [target_role_arn]}
        if target_role_arn else
        {"Sid": "WriteTargetTable", "Effect": "Allow",
         "Action": ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:DeleteItem"], "Resource": [target_table_arn]}
    )
    journal = ([{"Sid": "MigrationJournal", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem",
                "dynamodb:UpdateItem"], "Resource": [state_table_arn]}] if state_table_arn and not target_role_arn else [])
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadSourceStream", "Effect": "Allow",
         "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
         "Resource": [stream_arn]},
        {"Sid": "ReadSourceItems", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [source_table_arn]},
        write_target,
        {"Sid": "DeadLetters", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [dead_letter_queue_arn]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"]},
        *journal,
    ]}


TRUST_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def ensure_dead_letter_queue(sqs, name: str) -> str:
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def ensure_log_group(logs, region: str, account: str, function_name: str) -> str:
    """Ferry creates the function's log group itself, so the role needs no logs:CreateLogGroup."""
    log_group = f"/aws/lambda/{function_name}"
    try:
        logs.create_log_group(logGroupName=log_group)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    return f"arn:aws:logs:{region}:{account}:log-group:{log_group}"


ROLE_POLICY = "ferry-live-sync"  # the inline policy of a live-sync function's role


def ensure_role(iam, name: str, policy: dict) -> str:
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                              Description="Ferry live sync: one source to one target")["Role"]["Arn"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=ROLE_POLICY, PolicyDocument=json.dumps(policy))
    return arn


def ensure_function(lambda_client, name: str, role_arn: str, environment: dict, code: bytes,
                    handler: str = HANDLER, description: str = "Ferry live sync (DynamoDB stream -> target table)",
                    timeout: int = 60) -> str:
    settings = {"Role": role_arn, "Handler": handler, "Runtime": RUNTIME, "Timeout": timeout, "MemorySize": 256,
                "Environment": {"Variables": environment}, "Description": description}
    for attempt in range(10):  # a new IAM role takes a few seconds to become assumable by Lambda
        try:
            return lambda_client.create_function(FunctionName=name, Code={"ZipFile": code}, Publish=True,
                                                 **settings)["FunctionArn"]
        except ClientError as error:
            code_ = error.response["Error"]["Code"]
            if code_ == "ResourceConflictException":
                break
            if code_ == "InvalidParameterValueException" and "assume" in str(error) and attempt < 9:
                time.sleep(2 + attempt)
                continue
            raise
    lambda_client.update_function_code(FunctionName=name, ZipFile=code, Publish=True)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    lambda_client.update_function_configuration(FunctionName=name, **settings)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)  # no invocation with the old settings
    return lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]  # unqualified


def ensure_mapping(lambda_client, function_name: str, stream_arn: str, dead_letter_queue_arn: str) -> str:
    settings = {"BatchSize": BATCH_SIZE, "MaximumBatchingWindowInSeconds": BATCH_WINDOW_SECONDS,
                "BisectBatchOnFunctionError": True, "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS, "MaximumRecordAgeInSeconds": MAX_RECORD_AGE_SECONDS,
                "DestinationConfig": {"OnFailure": {"Destination": dead_letter_queue_arn}}}
    existing = lambda_client.list_event_source_mappings(FunctionName=function_name, EventSourceArn=stream_arn)
    if existing["EventSourceMappings"]:  # an earlier run's: paused until this run starts it, keeping its position
        uuid = existing["EventSourceMappings"][0]["UUID"]
        lambda_client.update_event_source_mapping(UUID=uuid, FunctionName=function_name, Enabled=False, **settings)
        return uuid
    return lambda_client.create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName=function_name, StartingPosition="TRIM_HORIZON", Enabled=False,
        **settings)["UUID"]


def deploy(iam, lambda_client, sqs, logs, *, source: str, target: str, stream_arn: str, source_table_arn: str,
           target_table_arn: str, target_role_arn: str | None = None,
           target_endpoint_url: str | None = None, state_table: str | None = None,
           state_table_arn: str | None = None, migration_id: str | None = None) -> LiveSyncDeployment:
    """Create or update everything the live-sync Lambda needs, its mapping disabled (an existing one is
    paused, keeping its position) until `start`. Given the migration's state table, the function
    keeps its journal there (lambdas/journal.py), which is what lets it run beside a backfill."""
    name = resource_name(source, target)
    log_group_arn = ensure_log_group(logs, lambda_client.meta.region_name, source_table_arn.split(":")[4], name)
    dead_letter_queue_arn = ensure_dead_letter_queue(sqs, resource_name(source, target, "-dlq"))
    policy = execution_policy(stream_arn, source_table_arn, target_table_arn, dead_letter_queue_arn, log_group_arn,
                              target_role_arn, state_table_arn)
    role_arn = ensure_role(iam, name, policy)
    # The target's region comes from its ARN: the function lives beside the source, wherever the target is.
    environment = {"TARGET_TABLE": target, "TARGET_REGION": target_table_arn.split(":")[3], "SOURCE_TABLE": source}
    if target_endpoint_url:
        environment["TARGET_ENDPOINT_URL"] = target_endpoint_url
    if target_role_arn:
        environment["TARGET_ROLE_ARN"] = target_role_arn
    if state_table and migration_id:  # beside the target: the same client (and role) reaches it
        environment |= {"STATE_TABLE": state_table, "MIGRATION_ID": migration_id}
    function_arn = ensure_function(lambda_client, name, role_arn, environment, package())
    uuid = ensure_mapping(lambda_client, name, stream_arn, dead_letter_queue_arn)
    return LiveSyncDeployment(name, function_arn, role_arn, dead_letter_queue_arn, uuid)


def start(lambda_client, deployment: LiveSyncDeployment) -> None:
    """Enable the mapping: the Lambda applies the stream from TRIM_HORIZON (of a new mapping), beside
    the backfill."""
    lambda_client.update_event_source_mapping(UUID=deployment.mapping_uuid, Enabled=True)


def wait_until_applied(streams_client, stream_arn: str, state: StateStore, migration_id: str, moment: float,
                       timeout: float, poll_interval: float = 0.5) -> None:
    """The catch-up gate for the Lambda: return once it has applied every change made before the
    wall-clock time `moment`. Each shard's last change before then is found by reading the stream
    (read-only); the Lambda's journal says when that key's applied sequence number reaches it (the
    Lambda applies a shard in order, so every earlier change of the shard is dealt with by then)."""
    pending = last_changes_before(streams_client, stream_arn, moment)
    deadline = time.monotonic() + timeout
    while pending:
        keys = [key for key, _ in pending.values()]
        applied = journal.read(state.client, state.table_name, migration_id, keys, field="applied")
        pending = {shard: (key, sequence) for shard, (key, sequence) in pending.items()
                   if int(applied.get(key_identity(key), "0")) < int(sequence)}
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise CannotContinue(
                f"the live-sync Lambda has not applied shard(s) {', '.join(sorted(pending))} up to the catch-up gate "
                f"in {timeout:.0f} s: check its mapping, its logs and its dead-letter queue, then rerun to resume")
        time.sleep(poll_interval)
