"""The cutover and rollback flows of a plan: the switch, deliberately, and the way back.

cutover:
    1. gates      each resource's live sync caught up (its lag under max_lag_seconds) and a final
                  verification equal; live sync keeps running from here to step 4
    2. approval   in the Prefect UI the run pauses with the gates' results until a person answers
                  the form; from the CLI, --yes or a question on the terminal
    3. the switch the new home's changes are captured first (a stream on each new table, events of
                  each new bucket), then the plan's SSM parameters are written (old values kept)
    4. forward    caught up once more (changes made before the switch), then stopped and held
    5. reverse    with reverse_sync: live sync from the new home back to the old one catches up;
                  `ferry sync plan` (or the sync deployment) runs it from then on
rollback: the old home's events captured again, the parameters restored, reverse sync drained and
stopped, forward live sync resumed from its checkpoint.

Every step is recorded in the state table (ferry/cutover.py) once done: a rerun after a kill goes on
from the first step not recorded, and each parameter is written once.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from ferry import cutover as steps
from ferry.errors import BadInput, DifferencesRemain, NotApproved
from ferry.plan import Plan
from flows.verify_bucket import verify_bucket
from flows.verify_table import verify_table
from tasks.cutover import (Approval, ask_for_approval, forget_parameters, hold_table_sync, prepare_reverse_table,
                           read_progress, record_step, recorded_stream, release_table_sync, restore_parameter,
                           resume_bucket_events, stop_bucket_events, switch_parameter)
from tasks.lambda_sync import wait_for_lambda_catch_up
from tasks.s3 import drain_bucket_events, enable_bucket_events, find_bucket_queue
from tasks.stream import follow_source_stream, measure_lag, stop_live_sync, wait_for_catch_up

MAX_THREADS = 64


@dataclass
class CutoverResult:
    plan: str
    switched: bool
    parameters: dict[str, dict] = field(default_factory=dict)
    gates: list[dict] = field(default_factory=list)
    reverse_sync: bool = False


@dataclass
class RollbackResult:
    plan: str
    restored: dict[str, str | None] = field(default_factory=dict)


def gate(kind: str, job, name: str, passed: bool, detail: str) -> dict:
    return {"kind": kind, "source": job.source, "target": job.target, "gate": name, "passed": passed, "detail": detail}


@contextmanager
def table_live_sync(jobs):
    """Each table's poller running while the block runs (Lambdas apply their own), stopped after it."""
    pollers = [job for job in jobs if job.live_sync == "poller"]
    running = [follow_source_stream.submit(job, recorded_stream(job)) for job in pollers]
    try:
        yield
    finally:
        for job in pollers:
            stop_live_sync(job)
        for syncing in running:
            syncing.result()


def catch_up_table(job) -> float:
    """Every change made before now is applied; then, the seconds live sync keeps behind the service
    (measured over a second catch-up: the first one's backlog says nothing about live sync's pace)."""
    if job.live_sync == "lambda":
        wait_for_lambda_catch_up(job, recorded_stream(job))
        return 0.0
    wait_for_catch_up(job, backfill_done=False)
    return measure_lag(job)


def catch_up_bucket(job) -> float:
    """The same for a bucket's queue: drained to now, then the lag of a second drain."""
    queue = find_bucket_queue(job)
    drain_bucket_events(job, queue, until_caught_up=True)
    return drain_bucket_events(job, queue, until_caught_up=True)["lag_seconds"]


def check_gates(plan: Plan) -> list[dict]:
    """Step 1, with every table's live sync running (the caller's)."""
    results, limit = [], plan.cutover.max_lag_seconds
    for job in plan.table_jobs():
        lag = catch_up_table(job)
        results.append(gate("table", job, "lag", lag <= limit, f"{lag:.1f} s behind (at most {limit:g})"))
        report = verify_table(source=job.source, target=job.target, fail_on_difference=False,
                              state_table=job.state_table, source_aws=job.source_aws, target_aws=job.target_aws)
        results.append(gate("table", job, "verified", report.equal,
                            f"{report.source_items} items, {len(report.differences)} differences"))
    for job in plan.bucket_jobs():
        lag = catch_up_bucket(job)
        results.append(gate("bucket", job, "lag", lag <= limit, f"{lag:.1f} s behind (at most {limit:g})"))
        report = verify_bucket(source=job.source, target=job.target, prefix=job.prefix, fail_on_difference=False,
                               live_sync_queue=find_bucket_queue(job), source_aws=job.source_aws,
                               target_aws=job.target_aws)
        equal = report.equal if job.delete else not (report.count("missing") or report.count("changed"))
        results.append(gate("bucket", job, "verified", equal,
                            f"{report.source_objects} objects, {report.count('missing')} missing, "
                            f"{report.count('changed')} changed"))
    return results


@flow(name="cutover", flow_run_name="cutover {plan.name}", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def cutover(plan: Plan, approval: Approval = "ui") -> CutoverResult:
    progress = read_progress(plan)
    reverse = plan.cutover.reverse_sync
    if not progress.done(steps.FORWARD_STOPPED):
        with table_live_sync(plan.table_jobs()):
            if not progress.done(steps.APPROVED):
                progress.gates = check_gates(plan)
                failed = [g for g in progress.gates if not g["passed"]]
                progress = record_step(plan, progress, None if failed else steps.GATES_PASSED)
                if failed:
                    raise DifferencesRemain("gate failed, nothing switched: " + "; ".join(
                        f"{g['kind']} {g['source']} -> {g['target']}: {g['gate']} ({g['detail']})" for g in failed))
                approved, why = ask_for_approval(plan, progress.gates, approval)
                if not approved:
                    raise NotApproved(f"the cutover of {plan.name} was not approved ({why}): nothing switched")
                get_run_logger().info("cutover of %s approved (%s)", plan.name, why)
                progress = record_step(plan, progress, steps.APPROVED)
            if reverse and not progress.done(steps.REVERSE_PREPARED):  # before the service can write there
                for job in plan.table_jobs(reverse=True):
                    prepare_reverse_table(job, plan.name)
                for job in plan.bucket_jobs(reverse=True):
                    enable_bucket_events(job)
                progress = record_step(plan, progress, steps.REVERSE_PREPARED)
            if not progress.done(steps.SWITCHED):
                for parameter in plan.cutover.parameters:
                    switch_parameter(plan, parameter.name, parameter.value)
                progress.direction = steps.REVERSE
                progress = record_step(plan, progress, steps.SWITCHED)
            for job in plan.bucket_jobs():  # no new events for the old side's queue ...
                stop_bucket_events(job)
            for job in plan.bucket_jobs():  # ... and what it holds is applied
                drain_bucket_events(job, find_bucket_queue(job), idle_seconds=2.0)
            for job in plan.table_jobs():  # changes made before the switch
                catch_up_table(job)
                hold_table_sync(job, plan.name, "the plan has cut over to the new home")
        progress = record_step(plan, progress, steps.FORWARD_STOPPED)
    if reverse and not progress.done(steps.REVERSE_STARTED):
        for job in plan.table_jobs(reverse=True):
            release_table_sync(job)
        with table_live_sync(plan.table_jobs(reverse=True)):
            for job in plan.table_jobs(reverse=True):
                catch_up_table(job)
        for job in plan.bucket_jobs(reverse=True):
            catch_up_bucket(job)
        progress = record_step(plan, progress, steps.REVERSE_STARTED)
    parameters = {p.name: switch_parameter(plan, p.name, p.value) for p in plan.cutover.parameters}  # recorded: no write
    return CutoverResult(plan.name, True, parameters, progress.gates, reverse)


@flow(name="rollback", flow_run_name="rollback {plan.name}", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def rollback(plan: Plan) -> RollbackResult:
    progress = read_progress(plan)
    if not progress.done(steps.APPROVED):
        raise BadInput(f"plan {plan.name!r} has not cut over: nothing to roll back")
    reverse = plan.cutover.reverse_sync and progress.done(steps.REVERSE_PREPARED)
    if not progress.done(steps.FORWARD_CAPTURED):  # before the service writes to the old home again
        for job in plan.bucket_jobs():
            resume_bucket_events(job)
        progress = record_step(plan, progress, steps.FORWARD_CAPTURED)
    restored = {}
    for parameter in plan.cutover.parameters:
        known, value = restore_parameter(plan, parameter.name)
        if known:
            restored[parameter.name] = value
    if not progress.done(steps.RESTORED):
        progress.direction = steps.FORWARD
        progress = record_step(plan, progress, steps.RESTORED)
    if reverse and not progress.done(steps.REVERSE_STOPPED):
        for job in plan.bucket_jobs(reverse=True):
            stop_bucket_events(job)
            drain_bucket_events(job, find_bucket_queue(job), idle_seconds=2.0)
        with table_live_sync(plan.table_jobs(reverse=True)):
            for job in plan.table_jobs(reverse=True):
                catch_up_table(job)
                hold_table_sync(job, plan.name, "the plan has rolled back to the old home")
        progress = record_step(plan, progress, steps.REVERSE_STOPPED)
    if not progress.done(steps.FORWARD_RESUMED):
        for job in plan.table_jobs():
            release_table_sync(job)
        with table_live_sync(plan.table_jobs()):
            for job in plan.table_jobs():
                catch_up_table(job)
        for job in plan.bucket_jobs():
            catch_up_bucket(job)
        progress = record_step(plan, progress, steps.FORWARD_RESUMED)
    forget_parameters(plan)
    record_step(plan, steps.Progress())  # forward, nothing cut over: a later cutover starts afresh
    return RollbackResult(plan.name, restored)
