"""`ferry iam-policy table|bucket|plan`: the least IAM policy for the operator of a migration, as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from ferry.aws import check_sides, client, session_for
from ferry.cli.bucket import Restore, TargetKmsKey
from ferry.cli.options import DEFAULT_LIVE_SYNC, LiveSync, StateTable, build_job, print_json, with_aws_sides
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, BucketJob, TableJob
from ferry.dynamo.lambda_sync import TRUST_POLICY
from ferry.iam import (TableRef, bucket_live_sync_lambda, bucket_source_statements, bucket_target_statements, cutover_statements,
                       key_arn, live_sync_lambda, numbered, policy, state_table_statement, table_source_statements,
                       table_target_statements)
from ferry.permissions import Caller, caller, self_check_statement
from ferry.s3.preflight import event_queues
from ferry.s3.routes import route_name


def self_checks(*principals: str | None) -> list[dict]:
    """The statement letting Ferry check each side's permissions up front (ferry/permissions.py)."""
    named = sorted({p for p in principals if p})
    return [{**self_check_statement(named[0]), "Resource": named}] if named else []


def table_refs(job: TableJob) -> tuple[TableRef, TableRef, TableRef, Caller, Caller]:
    """The pair's source, target and state table ARNs (in the callers' accounts), and the callers."""
    source_who, target_who = caller(job.source_aws), caller(job.target_aws)
    source_region, target_region = session_for(job.source_aws).region_name, session_for(job.target_aws).region_name
    return (TableRef(source_region, source_who.account, job.source),
            TableRef(target_region, target_who.account, job.target),
            TableRef(target_region, target_who.account, job.state_table), source_who, target_who)


def table_statements(job: TableJob, create_target: bool) -> list[dict]:
    """Both sides' statements for one table pair."""
    source, target, state, _, _ = table_refs(job)
    return table_source_statements(source, create_target) + table_target_statements(target, state, create_target)


def target_key(job: BucketJob) -> str | None:
    """The ARN of the job's target KMS key (an alias is resolved by the target side's KMS)."""
    if not job.target_kms_key:
        return None
    region = session_for(job.target_aws).region_name
    return key_arn(job.target_kms_key, region, caller(job.target_aws).account, client(job.target_aws, "kms"))


def bucket_statements(job: BucketJob) -> list[dict]:
    """Both sides' statements for one bucket pair, its queues in the source's account and region."""
    queues = event_queues(job, session_for(job.source_aws).region_name, caller(job.source_aws).account)
    return (bucket_source_statements(job.source, job.prefix, queues, route_name(job.source, job.target),
                                     restore=bool(job.restore_days), all_versions=job.all_versions)
            + bucket_target_statements(job.source, job.target, job.prefix, queues[0].region, target_key(job),
                                       job.all_versions))


@with_aws_sides
def table(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Source table name.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="Target table name.")],
    create_target: Annotated[bool, typer.Option("--create-target", help="Include creating the target.")] = False,
    live_sync: LiveSync = DEFAULT_LIVE_SYNC,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> None:
    """Print {"operator": POLICY} for `ferry table SOURCE TARGET` (also covering verify, sync and status
    of the pair), scoped to the exact table and stream ARNs; with --live-sync lambda, the operator's
    policy also deploys the function, and {"live_sync_role": POLICY, "live_sync_trust": POLICY} is
    what Ferry attaches to the function's role."""
    job = build_job(TableJob, source=source, target=target, state_table=state_table, live_sync=live_sync,
                    source_aws=source_aws, target_aws=target_aws)  # the same name rules as `ferry table`
    check_sides(job.source_aws, job.target_aws)
    source_ref, target_ref, state_ref, source_who, target_who = table_refs(job)
    statements = (table_source_statements(source_ref, create_target)
                  + table_target_statements(target_ref, state_ref, create_target)
                  + self_checks(source_who.principal, target_who.principal))
    if job.live_sync != "lambda":
        print_json({"operator": policy(statements)})
        return
    deploy, role = live_sync_lambda(source_ref, target_ref, state_ref,
                                    job.target_aws.role_arn if job.target_aws != job.source_aws else None)
    print_json({"operator": policy(statements + deploy), "live_sync_role": role, "live_sync_trust": TRUST_POLICY})


@with_aws_sides
def bucket(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Source bucket.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="Target bucket.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Only keys under this prefix.")] = "",
    live_sync: LiveSync = DEFAULT_LIVE_SYNC,
    target_kms_key: TargetKmsKey = None,
    restore: Restore = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Include what --all-versions needs.")] = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> None:
    """Print {"operator": POLICY} for `ferry bucket SOURCE TARGET` (also covering verify, sync and
    status of the pair), scoped to the buckets, the objects under the prefix and the pair's event
    queues (with --target-kms-key, the key's use; with --restore, restoring source objects); with
    --live-sync lambda, also deploying the function, and {"live_sync_role": POLICY,
    "live_sync_trust": POLICY} for the function's role."""
    job = build_job(BucketJob, source=source, target=target, prefix=prefix, live_sync=live_sync,
                    source_aws=source_aws, target_aws=target_aws, target_kms_key=target_kms_key,
                    restore_days=restore, all_versions=all_versions)
    check_sides(job.source_aws, job.target_aws)
    source_who, target_who = caller(job.source_aws), caller(job.target_aws)
    statements = bucket_statements(job) + self_checks(source_who.principal, target_who.principal)
    if job.live_sync != "lambda":
        print_json({"operator": policy(statements)})
        return
    queue = event_queues(job, session_for(job.source_aws).region_name, source_who.account)[0]
    deploy, role = bucket_live_sync_lambda(job.source, job.target, job.prefix, queue, target_key(job), job.all_versions)
    print_json({"operator": policy(statements + deploy), "live_sync_role": role, "live_sync_trust": TRUST_POLICY})


def plan(path: Annotated[str, typer.Argument(metavar="PLAN", help="The plan file (YAML).")]) -> None:
    """Print {"operator": POLICY} for `ferry run|sync|status|cutover|rollback PLAN`: every pair's
    statements, the reverse pairs' too where the cutover syncs back, and the cutover's parameters."""
    from ferry.plan import load_plan

    loaded = load_plan(path)
    jobs = [("table", job) for job in loaded.table_jobs()] + [("bucket", job) for job in loaded.bucket_jobs()]
    if loaded.cutover.reverse_sync:
        jobs += [("table", job) for job in loaded.table_jobs(reverse=True)]
        jobs += [("bucket", job) for job in loaded.bucket_jobs(reverse=True)]
    check_sides(loaded.source.aws(), loaded.target.aws())
    statements: list[dict] = []
    for n, (kind, job) in enumerate(jobs, 1):
        pair = table_statements(job, job.create_target) if kind == "table" else bucket_statements(job)
        statements += numbered(pair, n)
    target_side = loaded.target.aws()
    target_who = caller(target_side)
    statements += cutover_statements([p.name for p in loaded.cutover.parameters], session_for(target_side).region_name,
                                     target_who.account)
    statements.append(state_table_statement(  # the plan's own records (its cutover's steps), on the target side
        TableRef(session_for(target_side).region_name, target_who.account, loaded.state_table), "PlanStateTable"))
    statements += self_checks(caller(loaded.source.aws()).principal, target_who.principal)
    print_json({"operator": policy(statements)})
