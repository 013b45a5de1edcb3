"""Step 2: deploy the live-sync Lambda (mapping disabled), and start it once the backfill is done."""

from __future__ import annotations

from prefect import get_run_logger, task

from ferry.aws import shared_client as client
from ferry.config import TableJob
from ferry.dynamo import lambda_sync
from tasks.common import RETRYING, table_clients


@task(
    name="deploy-live-sync",
    task_run_name="deploy live-sync Lambda {job.source} -> {job.target}",
    **RETRYING,
)
def deploy_live_sync(job: TableJob, stream_arn: str) -> lambda_sync.LiveSyncDeployment:
    clients = table_clients(job)
    side = job.source_aws  # the function reads the source's stream, so it lives beside it
    deployment = lambda_sync.deploy(
        client(side, "iam"), client(side, "lambda"), client(side, "sqs"), client(side, "logs"),
        source=job.source, target=job.target, stream_arn=stream_arn,
        source_table_arn=clients.source.describe_table(TableName=job.source)["Table"]["TableArn"],
        target_table_arn=clients.target.describe_table(TableName=job.target)["Table"]["TableArn"],
        target_role_arn=job.target_aws.role_arn if job.target_aws != job.source_aws else None,
        target_endpoint_url=job.target_aws.endpoint_url,
    )
    get_run_logger().info("live-sync Lambda %s deployed; its mapping starts after the backfill", deployment.function_name)
    return deployment


@task(name="start-live-sync", task_run_name="start live-sync Lambda {deployment.function_name}", **RETRYING)
def start_lambda_sync(job: TableJob, deployment: lambda_sync.LiveSyncDeployment) -> None:
    lambda_sync.start(client(job.source_aws, "lambda"), deployment)
