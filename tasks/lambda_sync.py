"""Step 2 with --live-sync lambda: deploy the live-sync Lambda, start it at once (beside the
backfill, through its journal), and the catch-up gate that waits for it."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ferry.aws import shared_client as client
from ferry.config import TableJob
from ferry.dynamo import lambda_sync
from ferry.state import Phase
from tasks.common import RETRYING, state_store, table_clients
from tasks.stream import CATCH_UP_TIMEOUT_SECONDS


@task(
    name="deploy-live-sync",
    task_run_name="deploy live-sync Lambda {job.source} -> {job.target}",
    **RETRYING,
)
def deploy_live_sync(job: TableJob, stream_arn: str) -> lambda_sync.LiveSyncDeployment:
    clients = table_clients(job)
    target_arn = clients.target.describe_table(TableName=job.target)["Table"]["TableArn"]
    side = job.source_aws  # the function reads the source's stream, so it lives beside it
    deployment = lambda_sync.deploy(
        client(side, "iam"), client(side, "lambda"), client(side, "sqs"), client(side, "logs"),
        source=job.source, target=job.target, stream_arn=stream_arn,
        source_table_arn=clients.source.describe_table(TableName=job.source)["Table"]["TableArn"],
        target_table_arn=target_arn,
        target_role_arn=job.target_aws.role_arn if job.target_aws != job.source_aws else None,
        target_endpoint_url=job.target_aws.endpoint_url,
        state_table=job.state_table,  # beside the target (tasks/common.state_store)
        state_table_arn=target_arn.rpartition(":table/")[0] + f":table/{job.state_table}",
        migration_id=job.migration_id,
    )
    get_run_logger().info("live-sync Lambda %s deployed", deployment.function_name)
    return deployment


@task(name="start-live-sync", task_run_name="start live-sync Lambda {deployment.function_name}", **RETRYING)
def start_lambda_sync(job: TableJob, deployment: lambda_sync.LiveSyncDeployment) -> None:
    lambda_sync.start(client(job.source_aws, "lambda"), deployment)


@task(name="catch-up-gate", task_run_name="wait for the Lambda to catch up on {job.target}", cache_policy=NO_CACHE)
def wait_for_lambda_catch_up(job: TableJob, stream_arn: str, timeout: float = CATCH_UP_TIMEOUT_SECONDS) -> None:
    """The backfill is done: the Lambda writes plainly from its next batch (it reads the phase), and
    this returns once it has applied every change made before now (its journal says so)."""
    clients = table_clients(job)
    state = state_store(job, clients)
    state.set_phase(state.load(job.migration_id), Phase.CATCH_UP)
    began = time.time()  # after the switch: a batch that read the old phase holds only older changes
    lambda_sync.wait_until_applied(clients.source_streams, stream_arn, state, job.migration_id, began, timeout)
