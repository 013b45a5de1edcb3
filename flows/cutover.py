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

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from ferry import cutover as steps
from ferry.errors import BadInput, DifferencesRemain, NotApproved
from ferry.plan import Plan
from ferry.s3.events import settle_seconds  # a bucket queue idle this long after routing stopped is drained
from flows.verify_bucket import verify_bucket
from flows.verify_table import verify_table
from tasks.cutover import (Approval, ask_for_approval, capture_bucket_events, check_ready, hold_bucket_sync,
                           hold_table_sync, prepare_reverse_table, read_progress, record_step, recorded_stream,
                           release_bucket_sync, release_table_sync, restore_parameter, stop_bucket_events,
                           switch_parameter, switched_parameters, table_held)
from tasks.lambda_sync import wait_for_lambda_catch_up
from tasks.s3 import drain_bucket_events, enable_bucket_events, find_bucket_queue
from tasks.stream import enter_switch_window, follow_source_stream, measure_lag, stop_live_sync, wait_for_catch_up

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


def catch_up_bucket(job, keep_target_changes_since: float | None = None) -> float:
    """The same for a bucket's queue: drained to now, then the lag of a second drain."""
    queue = find_bucket_queue(job)
    drain_bucket_events(job, queue, until_caught_up=True, keep_target_changes_since=keep_target_changes_since)
    return drain_bucket_events(job, queue, until_caught_up=True,
                               keep_target_changes_since=keep_target_changes_since)["lag_seconds"]


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
                               target_aws=job.target_aws, target_kms_key=job.target_kms_key,
                               all_versions=job.all_versions)
        equal = report.verified(job.delete)
        results.append(gate("bucket", job, "verified", equal,
                            f"{report.source_objects} objects, {report.count('missing')} missing, "
                            f"{report.count('changed')} changed"))
    return results


@flow(name="cutover", flow_run_name="cutover {plan.name}", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def cutover(plan: Plan, approval: Approval = "ui") -> CutoverResult:
    progress = read_progress(plan)
    if progress.rolling_back:
        raise BadInput(f"a rollback of plan {plan.name!r} has not finished: run 'ferry rollback PLAN' again to "
                       "finish it, then cut over")
    if not progress.done(steps.APPROVED):
        if not plan.cutover.parameters:
            raise BadInput(f"plan {plan.name!r} has no cutover.parameters: name the SSM parameters the service reads "
                           "its resource names from, so that the switch is a step Ferry takes")
        check_ready(plan)
    if not progress.done(steps.FORWARD_STOPPED):
        if progress.switching_at is not None:  # a rerun: the switch may have begun, so from the first batch
            for job in plan.table_jobs():
                enter_switch_window(job)
        with table_live_sync(plan.table_jobs()):
            if not progress.done(steps.APPROVED):
                progress = approve(plan, progress, approval)
            if progress.reverse_sync and not progress.done(steps.REVERSE_PREPARED):  # before the service goes there
                for job in plan.table_jobs(reverse=True):
                    prepare_reverse_table(job, plan.name)
                for job in plan.bucket_jobs(reverse=True):
                    capture_bucket_events(job)
                    hold_bucket_sync(job, plan.name)
                progress = record_step(plan, progress, steps.REVERSE_PREPARED)
            if not progress.done(steps.SWITCHED):
                if progress.switching_at is None:
                    progress.switching_at = time.time()
                    progress = record_step(plan, progress)
                for job in plan.table_jobs():  # from now on the service may write to the new home too
                    enter_switch_window(job)
                for name, value in progress.parameters:  # as approved, whatever the plan file says now
                    switch_parameter(plan, progress.epoch, name, value)
                progress.direction = steps.REVERSE
                progress = record_step(plan, progress, steps.SWITCHED)
            for job in plan.bucket_jobs():  # no new events for the old side's queue, then what it holds
                stop_bucket_events(job, plan.name)
                drain_bucket_events(job, find_bucket_queue(job), idle_seconds=settle_seconds(),
                                    keep_target_changes_since=progress.switching_at)
            for job in plan.table_jobs():  # changes made before the switch
                if not table_held(job):
                    catch_up_table(job)
                    hold_table_sync(job, plan.name, "the plan has cut over to the new home")
        progress = record_step(plan, progress, steps.FORWARD_STOPPED)
    if progress.reverse_sync and not progress.done(steps.REVERSE_STARTED):  # from the home the service uses
        for job in plan.table_jobs(reverse=True):
            release_table_sync(job)
        with table_live_sync(plan.table_jobs(reverse=True)):
            for job in plan.table_jobs(reverse=True):
                catch_up_table(job)
        for job in plan.bucket_jobs(reverse=True):
            release_bucket_sync(job)
            catch_up_bucket(job)
        progress = record_step(plan, progress, steps.REVERSE_STARTED)
    parameters = switched_parameters(plan, progress.epoch, [name for name, _ in progress.parameters])
    return CutoverResult(plan.name, True, parameters, progress.gates, progress.reverse_sync)


def approve(plan: Plan, progress: steps.Progress, approval: Approval) -> steps.Progress:
    """Steps 1 and 2 (again on a rerun until approved): the gates, then a person's answer. A new
    cutover gets the next epoch, and what the rollback must undo is recorded with the approval: the
    parameters and their values, and whether reverse sync runs. A failed gate or a rejection leaves
    no step recorded (the plan is as before the cutover was asked for)."""
    if not progress.steps:
        progress.epoch += 1
    progress.gates = check_gates(plan)
    failed = [g for g in progress.gates if not g["passed"]]
    if failed:
        progress.steps = []
        record_step(plan, progress)
        raise DifferencesRemain("gate failed, nothing switched: " + "; ".join(
            f"{g['kind']} {g['source']} -> {g['target']}: {g['gate']} ({g['detail']})" for g in failed))
    progress = record_step(plan, progress, steps.GATES_PASSED)
    approved, why = ask_for_approval(plan, progress.gates, approval)
    if not approved:
        progress.steps = []
        record_step(plan, progress)
        raise NotApproved(f"the cutover of {plan.name} was not approved ({why}): nothing switched")
    get_run_logger().info("cutover of %s approved (%s)", plan.name, why)
    progress.parameters = [[p.name, p.value] for p in plan.cutover.parameters]
    progress.reverse_sync = plan.cutover.reverse_sync
    return record_step(plan, progress, steps.APPROVED)


@flow(name="rollback", flow_run_name="rollback {plan.name}", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def rollback(plan: Plan) -> RollbackResult:
    """What the approved cutover recorded is undone (its parameters, its reverse sync), whatever the
    plan file says now. Reverse sync catches up before the parameters are restored (the old home is
    current when the service comes back to it) and drains after, in the window."""
    progress = read_progress(plan)
    if not progress.done(steps.APPROVED):
        raise BadInput(f"plan {plan.name!r} has not cut over: nothing to roll back")
    reverse_ran = progress.reverse_sync and progress.done(steps.REVERSE_PREPARED) and progress.switching_at is not None
    reverse_jobs = plan.table_jobs(reverse=True) if reverse_ran and not progress.done(steps.REVERSE_STOPPED) else []
    if progress.restoring_at is not None:  # a rerun: the restore may have begun
        for job in reverse_jobs:
            enter_switch_window(job)
    restored = {}
    with table_live_sync(reverse_jobs):
        if not progress.done(steps.RESTORED):
            for job in reverse_jobs:  # the old home current before the service comes back to it
                catch_up_table(job)
            if reverse_ran:
                for job in plan.bucket_jobs(reverse=True):
                    catch_up_bucket(job)
        if not progress.done(steps.FORWARD_CAPTURED):  # before the service writes to the old home again
            for job in plan.bucket_jobs():
                capture_bucket_events(job)
            progress = record_step(plan, progress, steps.FORWARD_CAPTURED)
        if progress.restoring_at is None:
            progress.restoring_at = time.time()
            progress = record_step(plan, progress)
        for job in reverse_jobs:  # from now on the service may write to the old home too
            enter_switch_window(job)
        for name, _ in progress.parameters:
            known, value = restore_parameter(plan, progress.epoch, name)
            if known:
                restored[name] = value
        if not progress.done(steps.RESTORED):
            progress.direction = steps.FORWARD
            progress = record_step(plan, progress, steps.RESTORED)
        if progress.reverse_sync and progress.done(steps.REVERSE_PREPARED) and not progress.done(steps.REVERSE_STOPPED):
            for job in plan.bucket_jobs(reverse=True):
                stop_bucket_events(job, plan.name)
                if reverse_ran:
                    drain_bucket_events(job, find_bucket_queue(job), idle_seconds=settle_seconds(),
                                        keep_target_changes_since=progress.restoring_at)
            for job in reverse_jobs:  # what the service wrote to the new home until now
                catch_up_table(job)
                hold_table_sync(job, plan.name, "the plan has rolled back to the old home")
    if progress.reverse_sync and not progress.done(steps.REVERSE_STOPPED):
        progress = record_step(plan, progress, steps.REVERSE_STOPPED)
    if not progress.done(steps.FORWARD_RESUMED):  # from the home the service uses again
        for job in plan.table_jobs():
            release_table_sync(job, replay_whole_stream=True)
        with table_live_sync(plan.table_jobs()):
            for job in plan.table_jobs():
                catch_up_table(job)
        for job in plan.bucket_jobs():
            release_bucket_sync(job)
            catch_up_bucket(job)
        progress = record_step(plan, progress, steps.FORWARD_RESUMED)
    record_step(plan, steps.Progress(epoch=progress.epoch, version=progress.version))  # a later cutover starts afresh
    return RollbackResult(plan.name, restored)
