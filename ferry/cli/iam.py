"""`ferry iam-policy table`: the least IAM policy for the operator of a table migration, as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from ferry.aws import check_sides, session_for
from ferry.cli.options import StateTable, build_job, print_json, with_aws_sides
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.iam import TableRef, table_operator_policy


def account_and_region(side: AwsSide) -> tuple[str, str]:
    """The account (sts:GetCallerIdentity, which needs no permission) and region of one side."""
    session = session_for(side)
    sts = session.client("sts", endpoint_url=side.endpoint_url)
    return sts.get_caller_identity()["Account"], session.region_name


@with_aws_sides
def table(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Source table name.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="Target table name.")],
    create_target: Annotated[bool, typer.Option("--create-target", help="Include creating the target.")] = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> None:
    """Print {"operator": POLICY} for `ferry table SOURCE TARGET` with the local poller (also covering
    verify, sync and status of the pair), scoped to the exact table and stream ARNs."""
    job = build_job(TableJob, source=source, target=target, state_table=state_table,
                    source_aws=source_aws, target_aws=target_aws)  # the same name rules as `ferry table`
    check_sides(job.source_aws, job.target_aws)
    source_account, source_region = account_and_region(job.source_aws)
    target_account, target_region = account_and_region(job.target_aws)
    policy = table_operator_policy(TableRef(source_region, source_account, job.source),
                                   TableRef(target_region, target_account, job.target),
                                   TableRef(target_region, target_account, job.state_table), create_target)
    print_json({"operator": policy})
