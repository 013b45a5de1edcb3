"""The plan commands: `ferry run`, `ferry sync plan`, `ferry cutover`, `ferry rollback`,
`ferry status PLAN` and `ferry deploy`. Each reads and validates the plan file first (one line
naming the file, line and field; exit 2), then runs every read-only check of its resources before
Prefect starts."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from ferry.aws import check_sides, client
from ferry.cli import bucket as bucket_cli
from ferry.cli import render
from ferry.cli import table as table_cli
from ferry.cli.options import JsonOutput, UntilIdle, Verbose, print_json, use_prefect
from ferry.errors import BadInput
from ferry.plan import Plan, load_plan
from ferry.state import StateStore

EXIT_OK, EXIT_DIFFERENT = 0, 1

PlanFile = Annotated[str, typer.Argument(metavar="PLAN", help="The plan file (YAML; see examples/plan.yaml).")]
Yes = Annotated[bool, typer.Option("--yes", help="Approve without asking (the gates must still pass).")]


def read(path: str) -> Plan:
    plan = load_plan(path)
    if plan.buckets:
        from ferry.s3.events import settle_seconds

        settle_seconds()  # FERRY_EVENT_SETTLE_SECONDS checked before anything runs
    check_sides(plan.source.aws(), plan.target.aws())
    return plan


def check_resources(plan: Plan) -> None:
    """Every read-only check `ferry table` and `ferry bucket` make, for every resource of the plan."""
    from ferry.dynamo.preflight import check_table_job

    for job in plan.table_jobs():
        clients = table_cli.connect(job)
        check_table_job(job, clients, StateStore(clients.target, job.state_table))
    for job in plan.bucket_jobs():
        bucket_cli.connect(job)


def check_migrated(plan: Plan) -> None:
    """Live sync needs each resource's migration in place (run by `ferry run`)."""
    from ferry.s3 import events

    for job in plan.table_jobs():
        migration = StateStore(client(job.target_aws, "dynamodb"), job.state_table).load(job.migration_id)
        if migration is None or not migration.stream_arn:
            raise BadInput(f"table {job.source} has not been migrated to {job.target}: run 'ferry run PLAN' first")
    for job in plan.bucket_jobs():
        events.find_queue(client(job.source_aws, "sqs"), job.source, job.target)


def run(plan_file: PlanFile, json_output: JsonOutput = False, verbose: Verbose = False) -> int:
    """Migrate every table and bucket of PLAN (each backfilled, live-synced and verified). Rerun to resume."""
    plan = read(plan_file)
    check_resources(plan)
    use_prefect(verbose)
    from flows.migrate_plan import migrate_plan

    started = time.monotonic()
    if not json_output:
        render.err.print(f"migrating {len(plan.tables)} tables and {len(plan.buckets)} buckets of plan {plan.name} "
                         f"({plan.parallel} at a time)...", highlight=False)
    result = migrate_plan(plan=plan)
    payload = {"plan": result.plan, "verified": result.verified, "resources": [vars(r) for r in result.resources]}
    if json_output:
        print_json(payload)
    else:
        render.plan_run(payload, time.monotonic() - started)
    return EXIT_OK if result.verified else EXIT_DIFFERENT


def sync(plan_file: PlanFile, until_idle: UntilIdle = None, json_output: JsonOutput = False,
         verbose: Verbose = False) -> int:
    """Live-sync every resource of PLAN in its current direction (forward before the cutover,
    reverse after it), until Ctrl-C/SIGTERM, or with --until-idle until all are idle."""
    if until_idle is not None and until_idle < 0:
        raise BadInput(f"--until-idle must be zero or more seconds, got {until_idle}")
    plan = read(plan_file)
    check_migrated(plan)
    use_prefect(verbose)
    from flows.migrate_plan import sync_plan

    applied = sync_plan(plan=plan, idle_seconds=until_idle)
    if json_output:
        print_json({"plan": plan.name, "resources": applied})
    else:
        for resource in applied:
            render.out.print(f"{resource['kind']} {resource['source']} -> {resource['target']}: "
                             f"{resource['applied']:,} changes applied", highlight=False)
    return EXIT_OK


def approval(yes: bool) -> str:
    if yes:
        return "given"
    if not sys.stdin.isatty():
        raise BadInput("the cutover needs an approval: pass --yes, or run it on a terminal to be asked")
    return "terminal"


def cutover(plan_file: PlanFile, yes: Yes = False, json_output: JsonOutput = False, verbose: Verbose = False) -> int:
    """Gates (lag, final verification), approval, the switch of the plan's SSM parameters, forward live
    sync stopped and reverse sync started. Exit 1 when a gate fails (nothing switched). Rerun to resume."""
    plan = read(plan_file)
    given = approval(yes)
    check_migrated(plan)
    if not plan.cutover.parameters:
        raise BadInput(f"{plan_file}: cutover.parameters is empty: name the SSM parameters the service reads its "
                       "resource names from, so that the switch is a step Ferry takes")
    from ferry import cutover as steps

    steps.check_ready(plan, lambda side: client(side, "dynamodb"))
    steps.check_parameters(client(plan.target.aws(), "ssm"), [p.name for p in plan.cutover.parameters])
    use_prefect(verbose)
    from flows.cutover import cutover as cutover_flow

    result = cutover_flow(plan=plan, approval=given)
    payload = {"plan": result.plan, "switched": result.switched, "parameters": result.parameters,
               "gates": result.gates, "reverse_sync": result.reverse_sync}
    if json_output:
        print_json(payload)
    else:
        render.plan_cutover(payload)
    return EXIT_OK


def rollback(plan_file: PlanFile, yes: Yes = False, json_output: JsonOutput = False, verbose: Verbose = False) -> int:
    """Restore the parameters recorded at the switch, stop reverse sync, resume forward live sync."""
    plan = read(plan_file)
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("the rollback needs a confirmation: pass --yes, or run it on a terminal to be asked")
        if not typer.confirm(f"Roll plan {plan.name} back to the old home?", err=True):
            raise typer.Abort()
    use_prefect(verbose)
    from flows.cutover import rollback as rollback_flow

    result = rollback_flow(plan=plan)
    if json_output:
        print_json({"plan": result.plan, "restored": result.restored})
    else:
        for name, value in result.restored.items():
            render.out.print(f"restored {name} = {value if value is not None else '(deleted: it did not exist)'}",
                             highlight=False)
        render.out.print(f"plan {plan.name} rolled back: forward live sync resumed", highlight=False)
    return EXIT_OK


def status(plan_file: PlanFile, json_output: JsonOutput = False) -> int:
    """Every resource of PLAN: phase, progress, live-sync direction and lag, last verification."""
    from ferry import cutover as steps
    from ferry.s3 import events

    plan = read(plan_file)
    progress = steps.read(StateStore(client(plan.target.aws(), "dynamodb"), plan.state_table), plan.state_id)
    reverse = progress.direction == steps.REVERSE
    rows = []
    for job, back in zip(plan.table_jobs(), plan.table_jobs(reverse=True)):
        live = back if reverse else job
        migration = StateStore(client(job.target_aws, "dynamodb"), job.state_table).load(job.migration_id)
        syncing = StateStore(client(live.target_aws, "dynamodb"), live.state_table).load(live.migration_id)
        rows.append({
            "kind": "table", "source": job.source, "target": job.target,
            "phase": migration.phase.value if migration else "not started",
            "progress": f"{migration.copied:,} ({migration.segments_done}/{migration.total_segments})"
            if migration else "-",
            "direction": steps.REVERSE if reverse else steps.FORWARD,
            "lag_seconds": round(syncing.live_sync.lag_seconds, 1) if syncing and syncing.live_sync else None,
            "last_applied_seconds_ago": round(syncing.live_sync.since(), 0) if syncing and syncing.live_sync else None,
            "verified": {"done": True, "different": False}.get(migration.phase.value) if migration else None,
            "updated_at": migration.updated_at if migration else None,
        })
    for job, back in zip(plan.bucket_jobs(), plan.bucket_jobs(reverse=True)):
        live = back if reverse else job
        try:
            state = events.sync_status(client(live.source_aws, "sqs"), client(live.source_aws, "s3"),
                                       client(live.source_aws, "events"), client(live.source_aws, "lambda"),
                                       live.source, live.target)
            phase, pending = ("live sync" if state.events_routed else "not routed"), state.pending + state.in_flight
        except BadInput:
            phase, pending = "not started", None
        rows.append({"kind": "bucket", "source": job.source, "target": job.target, "phase": phase,
                     "progress": "-", "direction": steps.REVERSE if reverse else steps.FORWARD,
                     "lag_seconds": state.lag_seconds if pending is not None else None, "pending_events": pending,
                     "verified": None, "updated_at": None})
    payload = {"plan": plan.name, "direction": progress.direction, "cutover_steps": progress.steps, "resources": rows}
    if json_output:
        print_json(payload)
    else:
        render.plan_status(payload)
    return EXIT_OK


def deploy(plan_file: PlanFile,
           pool: Annotated[str, typer.Option("--pool", help="Prefect work pool (a process pool) to run on.")] = "ferry",
           json_output: JsonOutput = False) -> int:
    """Create Prefect deployments for PLAN (migrate, sync, verify, cutover, rollback) with its schedules."""
    plan = read(plan_file)
    use_prefect(verbose=False)
    from deployments.plan import deploy_plan

    names = deploy_plan(plan, pool)
    if json_output:
        print_json({"plan": plan.name, "deployments": names})
    else:
        for name in names:
            render.out.print(f"deployed {name}", highlight=False)
        render.out.print(f"start a worker: prefect worker start --pool {pool}", highlight=False)
    return EXIT_OK
