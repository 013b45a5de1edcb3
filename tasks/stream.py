"""Step 1 (enable the source's stream) and step 2, live sync by polling it: the poller, the gate.

Live sync runs as a long task beside the others, from the start: the flow starts it right after the
stream is enabled, and it applies changes beside the backfill segments through the write rule's
guarded writes (lambdas/write_rule.py). Once the backfill is done it switches to plain writes, the
flow waits until it has caught up (the catch-up gate), verifies while it keeps applying changes,
clears the markers, then stops it. The same task, run alone with an idle limit or until stopped, is
`ferry sync table`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from ferry import lease
from ferry.config import TableJob
from ferry.state import Phase
from ferry.dynamo.preflight import TablePlan
from ferry.dynamo.backfill import clear_markers
from ferry.dynamo.schema import key_schema, require_table
from ferry.dynamo.stream import FollowResult, enable_stream, follow_stream, lag_warning
from ferry.errors import CannotContinue
from lambdas import journal
from lambdas.dynamo_apply import apply_stream_records
from tasks.common import RETRYING, state_store, table_clients, will_be_retried
from tasks.handles import LiveSync, live_sync_name, stop_on_signals, this_run

CATCH_UP_TIMEOUT_SECONDS = 3600
APPLY_THREADS = 8  # keys of one batch written at once
PROGRESS_EVERY_SECONDS = 5.0  # live sync's progress record, at most this often
READ_THROUGH_EVERY_SECONDS = 60.0  # how far the poller has applied, recorded at most this often


@task(
    name="enable-stream",
    task_run_name="enable stream on {job.source}",
    **RETRYING,
)
def enable_source_stream(job: TableJob, plan: TablePlan) -> str:
    """Enable (or reuse) the stream and record it: changes from here on will be replayed."""
    clients = table_clients(job)
    state = state_store(job, clients)
    stream_arn = enable_stream(clients.source, clients.source_streams, job.source)
    migration = state.load(plan.migration_id)
    if migration.stream_arn and migration.stream_arn != stream_arn:
        raise CannotContinue(  # preflight found it in place: replaced in the seconds since
            f"the stream of {job.source!r} changed since this migration started (it was disabled and "
            "re-enabled), so changes made in between are lost: run again with --restart"
        )
    migration.stream_arn = stream_arn
    state.set_phase(migration, Phase.BACKFILL)
    get_run_logger().info("stream %s enabled; changes from now on will be replayed", stream_arn)
    return stream_arn


@task(
    name="live-sync",
    task_run_name="live sync {job.source} -> {job.target}",
    **RETRYING,
)
def follow_source_stream(job: TableJob, stream_arn: str, idle_seconds: float | None = None) -> FollowResult:
    """Apply the source's stream to the target with the Lambda's apply function, checkpointing each
    shard, until idle for `idle_seconds` or until stopped. Rejected changes go to the dead letters."""
    sync = this_run(live_sync_name(job.migration_id), LiveSync)
    try:
        result = _follow(job, stream_arn, idle_seconds, sync)
    except BaseException as error:
        if not will_be_retried(error):
            sync.fail(error)  # the gate stops waiting, with this error
        raise
    get_run_logger().info("live sync applied %d records from %d shards (%d rejected)", result.records,
                          result.shards, result.rejected)
    return result


def _follow(job: TableJob, stream_arn: str, idle_seconds: float | None, sync: LiveSync) -> FollowResult:
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id)
    sync.guarded = sync.guarded and not migration.backfilled  # a retry after the switch stays plain
    # Resuming a backfill that an earlier live sync wrote beside (killed, perhaps between a page's
    # batch and its rewrite, which erased that live write): replay the whole stream under the rule,
    # so every change is applied again after whatever the batch left (write_rule.py).
    replay_whole = sync.guarded and state.markers_noted(job.migration_id)
    checkpoints = {} if replay_whole else dict(migration.shards)
    finished = set() if replay_whole else migration.finished_shards
    if replay_whole:
        get_run_logger().info("the backfill of %s resumes beside an earlier live sync: replaying the whole stream",
                              job.source)
    markers_noted = False

    def apply(records: list[dict]) -> int:
        nonlocal markers_noted
        guarded = sync.guarded  # read once per batch: end_guard() takes effect from the next one
        if guarded and not markers_noted:
            state.note_markers(job.migration_id)  # before the first marker can be written
            markers_noted = True
        if guarded:  # noted before the writes are sent: the backfill writes these keys again after its page
            sync.live_writes.note([(r["dynamodb"]["Keys"], r["dynamodb"]["SequenceNumber"]) for r in records])
        with sync.batch_lock:  # enter_switch_window waits for the batch in hand
            result = apply_stream_records(clients.target, job.target, records, guarded, pool=writers,
                                          source_client=clients.source, source_table=job.source,
                                          only_over_unchanged=sync.over_unchanged_only)
        if result.kept:
            get_run_logger().warning("%d changes to %s were not applied: the service had written those keys in %s "
                                     "since the switch (its writes kept)", result.kept, job.source, job.target)
        for rejected in result.rejected:
            state.save_dead_letter(job.migration_id, rejected.sequence_number, rejected.key, rejected.error,
                                   migration.generation)
        return len(result.rejected)

    reported_at = 0.0

    def on_batch(count: int, lag: float) -> None:
        nonlocal reported_at
        sync.records += count
        sync.lag_seconds = lag
        if time.monotonic() - reported_at >= PROGRESS_EVERY_SECONDS:  # for `ferry status`, in both modes
            journal.report_progress(state.client, state.table_name, job.migration_id, "poller", lag, count)
            reported_at = time.monotonic()
        if (warning := lag_warning(lag)) and not sync.warned:
            sync.warned = True
            get_run_logger().warning(warning)

    saved_at = 0.0

    def on_position(applied_to: float) -> None:
        nonlocal saved_at
        sync.reached(applied_to)
        if applied_to > 0 and time.monotonic() - saved_at >= READ_THROUGH_EVERY_SECONDS:
            state.save_read_through(job.migration_id, applied_to)  # a rerun checks the retention covers since
            saved_at = time.monotonic()

    with stop_on_signals(sync), live_sync_lease(state, job, sync), \
            ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="apply") as writers:
        return follow_stream(
            clients.source_streams, stream_arn, checkpoints, apply,
            save_checkpoint=lambda shard, sequence: state.save_shard(job.migration_id, shard, sequence,
                                                                     migration.generation),
            finished_shards=finished,
            on_shard_finished=lambda shard: state.save_shard_finished(job.migration_id, shard, migration.generation),
            idle_seconds=idle_seconds, stop=sync.stop, on_position=on_position, on_batch=on_batch,
        )


@contextmanager
def live_sync_lease(state, job: TableJob, sync: LiveSync):
    """Hold the migration's live-sync lease (ferry/lease.py) while the poller runs. It is renewed
    every sixth of its length, errors retried; if it cannot be renewed before it lapses, or another
    holder took it over, live sync stops after the batch in hand and fails, rather than write beside
    another applier."""
    holder = lease.holder_name(flow_run.id)
    if other := lease.take(state, job.migration_id, holder):
        raise CannotContinue(lease.already_running(job.source, job.target, other))
    lost: list[str] = []
    done = threading.Event()

    def renew() -> None:
        held_until = time.monotonic() + lease.LEASE_SECONDS
        while not done.wait(lease.LEASE_SECONDS / 6):
            try:
                other = state.take_lease(job.migration_id, holder, lease.LEASE_SECONDS)
            except (BotoCoreError, ClientError) as error:  # throttled, the network: try again, in time
                if time.monotonic() < held_until - lease.LEASE_SECONDS / 6:
                    continue
                other = f"nobody: it could not be renewed ({type(error).__name__})"
            if other:
                lost.append(other)
                sync.stop.set()
                return
            held_until = time.monotonic() + lease.LEASE_SECONDS

    renewer = threading.Thread(target=renew, name="ferry-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        if not lost:
            try:
                state.release_lease(job.migration_id, holder)
            except (BotoCoreError, ClientError) as error:  # it lapses by itself; the run's own outcome matters
                get_run_logger().warning("the live-sync lease was not released (%s); it lapses in %.0f s",
                                         type(error).__name__, lease.LEASE_SECONDS)
    if lost:
        raise CannotContinue(f"live sync of {job.source} into {job.target} lost its lease ({lost[0]}) and stopped")


@task(name="catch-up-gate", task_run_name="wait for {job.target} to catch up", cache_policy=NO_CACHE)
def wait_for_catch_up(job: TableJob, timeout: float = CATCH_UP_TIMEOUT_SECONDS, backfill_done: bool = True) -> float:
    """The catch-up gate: return once this run's live sync has applied every change made before the
    gate began (every shard read past that moment; see follow_stream); fail at once, with the
    poller's own error, if the poller stops for good first. Returns live sync's lag then (seconds).
    `backfill_done`: the migration moves to its catch-up phase (a cutover's gate leaves it as it is)."""
    began = time.time()
    if backfill_done:
        state = state_store(job, table_clients(job))
        state.set_phase(state.load(job.migration_id), Phase.CATCH_UP)
    sync = this_run(live_sync_name(job.migration_id), LiveSync)
    sync.wait_until_applied(began, timeout)
    return sync.lag_seconds


@task(name="measure-lag", task_run_name="measure the live-sync lag of {job.target}", cache_policy=NO_CACHE)
def measure_lag(job: TableJob, timeout: float = CATCH_UP_TIMEOUT_SECONDS) -> float:
    """Once caught up: how far behind the service this run's live sync keeps (the age of the oldest
    change in the batches it applies until it has applied everything made before now; 0 when none)."""
    sync = this_run(live_sync_name(job.migration_id), LiveSync)
    sync.lag_seconds = 0.0
    sync.wait_until_applied(time.time(), timeout)
    return sync.lag_seconds


@task(name="switch-window", task_run_name="keep the service's writes in {job.target}", cache_policy=NO_CACHE)
def enter_switch_window(job: TableJob) -> None:
    """The service is being switched to the target: from the next batch on, this run's live sync
    writes only over keys the target has not changed since (lambdas/dynamo_apply.py)."""
    sync = this_run(live_sync_name(job.migration_id), LiveSync)
    sync.over_unchanged_only = True
    with sync.batch_lock:  # a batch applied plainly before the flag was set has finished when this returns
        pass


@task(name="end-backfill-guard", task_run_name="plain live-sync writes into {job.target}", cache_policy=NO_CACHE)
def end_backfill_guard(job: TableJob) -> None:
    """The backfill is done: this run's live sync writes plainly from its next batch (the gate that
    follows waits for pages fetched after this, so no guarded write is in flight after it)."""
    this_run(live_sync_name(job.migration_id), LiveSync).end_guard()


@task(name="clear-markers", task_run_name="clear write-rule markers from {job.target}", **RETRYING)
def clear_write_markers(job: TableJob, segments: int) -> int:
    """Remove the versions and tombstones live sync left while the backfill ran (only if it noted
    any). Runs after live sync has switched to plain writes; returns how many were cleared."""
    clients = table_clients(job)
    state = state_store(job, clients)
    if not state.markers_noted(job.migration_id):
        return 0
    key_names = [name for name, _, _ in key_schema(require_table(clients.target, job.target, "target"))]
    cleared = clear_markers(clients.target, job.target, key_names, segments)
    journal.forget_noted(state.client, state.table_name, job.migration_id)  # the Lambda's: no backfill reads them
    state.markers_cleared(job.migration_id)
    get_run_logger().info("cleared %d write-rule markers from %s", cleared, job.target)
    return cleared


@task(name="stop-live-sync", task_run_name="stop live sync {job.source} -> {job.target}", cache_policy=NO_CACHE)
def stop_live_sync(job: TableJob) -> None:
    this_run(live_sync_name(job.migration_id), LiveSync).stop.set()
