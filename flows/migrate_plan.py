"""The plan flows: every table and bucket of a plan, each as its own subflow.

    migrate-plan  each resource's migration (migrate-table, migrate-bucket), `plan.parallel` at a
                  time, until each is backfilled, live-synced and verified; rerun to resume
    sync-plan     each resource's live sync in the plan's current direction: forward before the
                  cutover, reverse (new home -> old) after it
    verify-plan   each resource's verification (scheduled by `ferry deploy` as a re-verification)

A resource's migration runs inside a task only so that several run at once (a task is what a task
runner runs concurrently); the task holds no logic of its own, and its subflow is the one
`ferry table` and `ferry bucket` run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.cutover import FORWARD_STOPPED, REVERSE, REVERSE_STARTED
from ferry.errors import BadInput
from ferry.plan import Plan
from flows.migrate_bucket import migrate_bucket, sync_bucket
from flows.migrate_table import migrate_table
from flows.sync_table import sync_table
from flows.verify_bucket import verify_bucket
from flows.verify_table import verify_table
from tasks.cutover import read_progress
from tasks.handles import stop_all_on_signals

MAX_PARALLEL = 64  # the task runner's threads; a plan's own `parallel` limits its migrations


@dataclass
class ResourceResult:
    kind: str
    source: str
    target: str
    verified: bool
    copied: int


@dataclass
class PlanResult:
    plan: str
    verified: bool
    resources: list[ResourceResult] = field(default_factory=list)


@task(name="migrate-resource", task_run_name="migrate {kind} {source} -> {target}", cache_policy=NO_CACHE)
def migrate_resource(plan: Plan, kind: str, source: str, target: str) -> ResourceResult:
    """Run one resource's migration flow (its own retries and checkpoints make a rerun resume)."""
    if kind == "table":
        job = next(j for j in plan.table_jobs() if j.source == source)
        result = migrate_table(**dict(job))
    else:
        job = next(j for j in plan.bucket_jobs() if j.source == source)
        result = migrate_bucket(**dict(job))
    return ResourceResult(kind, source, target, result.verified, result.copied)


def resources(plan: Plan, reverse: bool = False) -> list[tuple[str, object]]:
    return [("table", job) for job in plan.table_jobs(reverse)] + [("bucket", job) for job in plan.bucket_jobs(reverse)]


@flow(name="migrate-plan", flow_run_name="migrate-plan {plan.name}",
      task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
def migrate_plan(plan: Plan) -> PlanResult:
    running, results = [], []
    with stop_all_on_signals(interrupt=True):  # Ctrl-C, SIGTERM: every migration stops after the page in hand
        for kind, job in resources(plan):
            if len(running) == plan.parallel:  # a window of `parallel` migrations, in the plan's order
                results.append(running.pop(0).result())
            running.append(migrate_resource.submit(plan, kind, job.source, job.target))
        results += [r.result() for r in running]
    create_table_artifact(key=f"plan-{plan.name}", table=[vars(r) for r in results],
                          description=f"Migrations of plan {plan.name}")
    return PlanResult(plan.name, all(r.verified for r in results), results)


def direction(plan: Plan) -> bool:
    """Whether live sync runs in reverse now (the plan has cut over). While a cutover or a rollback
    is under way (or stopped half-way) there is no direction to sync: it is finished first."""
    progress = read_progress(plan)
    finished = progress.done(REVERSE_STARTED) or (progress.done(FORWARD_STOPPED) and not progress.reverse_sync)
    if progress.rolling_back:
        raise BadInput(f"a rollback of plan {plan.name!r} is under way or stopped half-way: let it finish, or run "
                       "'ferry rollback PLAN' again")
    if progress.steps and not finished:
        raise BadInput(f"a cutover of plan {plan.name!r} is under way or stopped half-way: let it finish, or run "
                       "'ferry cutover PLAN' again (or 'ferry rollback PLAN')")
    return progress.direction == REVERSE


@task(name="sync-resource", task_run_name="live sync {kind} {source} -> {target}", cache_policy=NO_CACHE)
def sync_resource(plan: Plan, kind: str, source: str, target: str, reverse: bool, idle_seconds: float | None) -> dict:
    if kind == "table":
        job = next(j for j in plan.table_jobs(reverse) if j.source == source)
        result = sync_table(source=job.source, target=job.target, idle_seconds=idle_seconds,
                            state_table=job.state_table, source_aws=job.source_aws, target_aws=job.target_aws)
        return {"kind": kind, "source": source, "target": target, "applied": result.records}
    job = next(j for j in plan.bucket_jobs(reverse) if j.source == source)
    counts = sync_bucket(source=job.source, target=job.target, idle_seconds=idle_seconds, prefix=job.prefix,
                         multipart_threshold=job.multipart_threshold, source_aws=job.source_aws,
                         target_aws=job.target_aws, target_kms_key=job.target_kms_key)
    return {"kind": kind, "source": source, "target": target, "applied": counts["messages"]}


@flow(name="sync-plan", flow_run_name="sync-plan {plan.name}", task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
def sync_plan(plan: Plan, idle_seconds: float | None = None) -> list[dict]:
    """Every resource's live sync at once (each runs until idle, or until Ctrl-C/SIGTERM stops them all
    after the batch in hand). Tables with a live-sync Lambda are the Lambda's."""
    reverse = direction(plan)
    if reverse and not read_progress(plan).reverse_sync:
        return []
    chosen = [(kind, job) for kind, job in resources(plan, reverse) if reverse or kind == "bucket"
              or job.live_sync == "poller"]
    with stop_all_on_signals():
        running = [sync_resource.submit(plan, kind, job.source, job.target, reverse, idle_seconds)
                   for kind, job in chosen]
        return [r.result() for r in running]


@flow(name="verify-plan", flow_run_name="verify-plan {plan.name}")
def verify_plan(plan: Plan, repair: bool = False) -> PlanResult:
    """Verify every resource in the plan's current direction: the source is the side the service
    uses (the old home before the cutover, the new one after it), so a repair copies its way."""
    reverse = direction(plan)
    results = []
    for job in plan.table_jobs(reverse):
        report = verify_table(source=job.source, target=job.target, repair=repair, fail_on_difference=False,
                              state_table=job.state_table, source_aws=job.source_aws, target_aws=job.target_aws)
        results.append(ResourceResult("table", job.source, job.target, report.equal, 0))
    for job in plan.bucket_jobs(reverse):
        report = verify_bucket(source=job.source, target=job.target, prefix=job.prefix, repair=repair,
                               fail_on_difference=False, source_aws=job.source_aws, target_aws=job.target_aws,
                               target_kms_key=job.target_kms_key)
        equal = report.verified(job.delete)
        results.append(ResourceResult("bucket", job.source, job.target, equal, 0))
    return PlanResult(plan.name, all(r.verified for r in results), results)
