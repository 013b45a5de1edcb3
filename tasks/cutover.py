"""Step 5, cutover: the recorded steps of a plan's switch and its way back (ferry/cutover.py)."""

from __future__ import annotations

import time
from typing import Literal

from prefect import get_run_logger, pause_flow_run, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput

from ferry import cutover
from ferry.aws import shared_client as client
from ferry.config import BucketJob, TableJob
from ferry.dynamo import lambda_sync
from ferry.dynamo.stream import enable_stream
from ferry.errors import CannotContinue
from ferry.plan import Plan
from ferry.s3 import events, routes
from ferry.state import Phase, SegmentProgress, StateStore
from tasks.common import RETRYING, state_store, table_clients

Approval = Literal["ui", "given", "terminal"]


def plan_state(plan: Plan) -> StateStore:
    """The plan's own records live in its state table on the target side."""
    return StateStore(client(plan.target.aws(), "dynamodb"), plan.state_table)


@task(name="read-cutover", task_run_name="read the cutover of {plan.name}", **RETRYING)
def read_progress(plan: Plan) -> cutover.Progress:
    return cutover.read(plan_state(plan), plan.state_id)


@task(name="record-step", task_run_name="record {step} of {plan.name}", **RETRYING)
def record_step(plan: Plan, progress: cutover.Progress, step: str | None = None) -> cutover.Progress:
    state = plan_state(plan)
    state.ensure_table()
    return cutover.record(state, plan.state_id, progress, step)


class CutoverApproval(RunInput):
    """The form a person fills in the Prefect UI to let the switch go ahead (or not)."""

    approve: bool = False
    reason: str = ""


def gates_markdown(plan: Plan, gates: list[dict]) -> str:
    rows = "\n".join(f"| {g['kind']} | {g['source']} -> {g['target']} | {g['gate']} | "
                     f"{'passed' if g['passed'] else 'FAILED'} | {g['detail']} |" for g in gates)
    switch = "\n".join(f"- `{p.name}` -> `{p.value}`" for p in plan.cutover.parameters) or "- (no parameters)"
    return (f"## Cutover of {plan.name}\n\n| kind | pair | gate | result | detail |\n|---|---|---|---|---|\n{rows}\n\n"
            f"Approving writes:\n{switch}\n\nReverse sync afterwards: {'yes' if plan.cutover.reverse_sync else 'no'}")


def ask_for_approval(plan: Plan, gates: list[dict], approval: Approval) -> tuple[bool, str]:
    """(approved, who/why). In the UI: the run pauses with the gates' results and waits for the form."""
    if approval == "given":
        return True, "approved in advance (--yes)"
    if approval == "terminal":
        from rich.console import Console
        from rich.prompt import Confirm

        console = Console(stderr=True)
        console.print(gates_markdown(plan, gates), markup=False, highlight=False)
        return Confirm.ask("Switch now?", console=console, default=False), "answered on the terminal"
    answer = pause_flow_run(wait_for_input=CutoverApproval.with_initial_data(
        description=gates_markdown(plan, gates), approve=False), timeout=plan.cutover.approval_timeout_seconds)
    return answer.approve, answer.reason or "answered in the Prefect UI"


# --- per resource ----------------------------------------------------------------------------------

@task(name="prepare-reverse-table", task_run_name="capture the changes of {job.source}", **RETRYING)
def prepare_reverse_table(job: TableJob, plan_name: str) -> str:
    """Before the switch sends the service to the new table: its stream on, and a new generation of
    the reverse migration's record (nothing to backfill: the tables are equal; no checkpoint of an
    earlier cutover: it reads the stream from its oldest record, which replays, in order, what
    forward sync wrote there - the old table's own states), held until the forward one stops."""
    clients = table_clients(job)
    state = state_store(job, clients)
    state.ensure_table()
    cutover.hold(state, job.migration_id, plan_name, "the plan has not cut over yet")
    stream_arn = enable_stream(clients.source, clients.source_streams, job.source)
    previous = state.load(job.migration_id)
    generation = previous.generation + 1 if previous else 0
    state.begin(job.migration_id, job.source, job.target, total_segments=1, generation=generation)
    state.save_segment(job.migration_id, SegmentProgress(0, 1, done=True, generation=generation))  # writes stay plain
    state.forget_stale(job.migration_id, generation)
    migration = state.load(job.migration_id)
    migration.stream_arn = stream_arn
    state.set_phase(migration, Phase.DONE)
    return stream_arn


@task(name="table-held", task_run_name="is live sync {job.source} -> {job.target} stopped", **RETRYING)
def table_held(job: TableJob) -> bool:
    return state_store(job, table_clients(job)).get_record(job.migration_id, "hold") is not None


@task(name="hold-table-sync", task_run_name="stop live sync {job.source} -> {job.target}", **RETRYING)
def hold_table_sync(job: TableJob, plan_name: str, why: str) -> None:
    """From now on this direction's live sync refuses to run (its last catch-up ran just before)."""
    clients = table_clients(job)
    cutover.hold(state_store(job, clients), job.migration_id, plan_name, why)
    if job.live_sync == "lambda":
        set_lambda_mapping(job, enabled=False)


@task(name="release-table-sync", task_run_name="allow live sync {job.source} -> {job.target}", **RETRYING)
def release_table_sync(job: TableJob, replay_whole_stream: bool = False) -> None:
    """This direction may run again. `replay_whole_stream`: its checkpoints may have aged out of the
    stream (more than a day since they were written): start from the oldest record still there."""
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id)
    if replay_whole_stream and migration and migration.read_through and \
            time.time() - migration.read_through > REPLAY_AFTER_SECONDS:
        state.forget_stream_position(job.migration_id)
        get_run_logger().warning("live sync of %s into %s last ran over %.0f h ago: replaying its whole stream",
                                 job.source, job.target, (time.time() - migration.read_through) / 3600)
    cutover.release(state, job.migration_id)
    if job.live_sync == "lambda":
        set_lambda_mapping(job, enabled=True)


REPLAY_AFTER_SECONDS = 20 * 3600  # well inside the stream's 24 hours


def set_lambda_mapping(job: TableJob, enabled: bool) -> None:
    lambda_client = client(job.source_aws, "lambda")
    name = lambda_sync.resource_name(job.source, job.target)
    for mapping in lambda_client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)


@task(name="capture-bucket-events", task_run_name="route events of {job.source} to its queue", **RETRYING)
def capture_bucket_events(job: BucketJob) -> str:
    """Ferry's notification entry for this pair in place (and its Lambda's mapping on), whatever the
    pair's hold says: the cutover captures a direction's events before it lets it apply them."""
    url, arn, _ = events.route_to_queue(client(job.source_aws, "sqs"), client(job.source_aws, "s3"),
                                        client(job.source_aws, "events"), job.source, job.target, job.prefix,
                                        job.events, respect_hold=False)
    if job.live_sync == "lambda":
        set_queue_mappings(job, arn, enabled=True)
    return url


def set_queue_mappings(job: BucketJob, queue_arn: str, enabled: bool) -> None:
    lambda_client = client(job.source_aws, "lambda")
    for mapping in lambda_client.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)


@task(name="stop-bucket-events", task_run_name="stop routing events of {job.source}", **RETRYING)
def stop_bucket_events(job: BucketJob, plan_name: str) -> bool:
    """Hold this direction (its queue says so), then remove only the route Ferry added for the pair
    (its notification entry or EventBridge rule: ferry/s3/routes.py; the queue stays, to be drained)."""
    sqs = client(job.source_aws, "sqs")
    url = events.find_queue(sqs, job.source, job.target)
    events.hold_queue(sqs, url, plan_name)
    unrouted = routes.unroute(client(job.source_aws, "s3"), client(job.source_aws, "events"), job.source, job.target,
                              events.queue_arn(sqs, url))
    if job.live_sync == "lambda":
        set_queue_mappings(job, events.queue_arn(sqs, url), enabled=False)
    return bool(unrouted.removed)


@task(name="hold-bucket-sync", task_run_name="hold live sync {job.source} -> {job.target}", **RETRYING)
def hold_bucket_sync(job: BucketJob, plan_name: str) -> None:
    sqs = client(job.source_aws, "sqs")
    events.hold_queue(sqs, events.find_queue(sqs, job.source, job.target), plan_name)


@task(name="release-bucket-sync", task_run_name="allow live sync {job.source} -> {job.target}", **RETRYING)
def release_bucket_sync(job: BucketJob) -> None:
    sqs = client(job.source_aws, "sqs")
    events.release_queue(sqs, events.find_queue(sqs, job.source, job.target))


@task(name="table-stream", task_run_name="find the stream of {job.source}", **RETRYING)
def recorded_stream(job: TableJob) -> str:
    migration = state_store(job, table_clients(job)).load(job.migration_id)
    if migration is None or not migration.stream_arn:
        raise CannotContinue(f"no migration of {job.source} into {job.target} is recorded: run 'ferry run PLAN' first")
    return migration.stream_arn


# --- parameters ----------------------------------------------------------------------------------

def ssm_client(plan: Plan):
    """The service's parameters live on the target side (where the service is going)."""
    return client(plan.target.aws(), "ssm")


@task(name="check-cutover", task_run_name="check {plan.name} can cut over", **RETRYING)
def check_ready(plan: Plan) -> None:
    """Every read-only check of a cutover (ferry/cutover.py), before it writes anything."""
    cutover.check_ready(plan, lambda side: client(side, "dynamodb"))
    cutover.check_parameters(ssm_client(plan), [p.name for p in plan.cutover.parameters])


@task(name="switch-parameter", task_run_name="switch {name}", **RETRYING)
def switch_parameter(plan: Plan, epoch: int, name: str, value: str) -> dict:
    switched = cutover.switch_parameter(ssm_client(plan), plan_state(plan), plan.state_id, epoch, name, value)
    get_run_logger().info("parameter %s switched", name)
    return switched


@task(name="switched-parameters", task_run_name="read the switch of {plan.name}", **RETRYING)
def switched_parameters(plan: Plan, epoch: int, names: list[str]) -> dict:
    return cutover.switched_parameters(plan_state(plan), plan.state_id, epoch, names)


@task(name="restore-parameter", task_run_name="restore {name}", **RETRYING)
def restore_parameter(plan: Plan, epoch: int, name: str) -> tuple[bool, str | None]:
    return cutover.restore_parameter(ssm_client(plan), plan_state(plan), plan.state_id, epoch, name)
