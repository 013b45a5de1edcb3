"""Step 1 (enable the source's stream) and live sync by polling it: catch-up, the gate, the poller.

Live sync runs as a long task beside the others: the flow starts it after the backfill, waits until
it has caught up (the catch-up gate), verifies while it keeps applying changes, then stops it. The
same task, run alone with an idle limit or until stopped, is `ferry sync table`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ferry.config import TableJob
from ferry.dynamo.preflight import TablePlan
from ferry.dynamo.stream import FollowResult, enable_stream, follow_stream
from ferry.errors import FerryError
from lambdas.dynamo_apply import apply_stream_records
from tasks.common import RETRYING, state_store, table_clients

CATCH_UP_TIMEOUT_SECONDS = 3600


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
        raise FerryError(
            f"the stream of {job.source!r} changed since this migration started (it was disabled and "
            "re-enabled), so changes made in between are lost: run again with --restart"
        )
    migration.stream_arn = stream_arn
    state.set_phase(migration, "backfill")
    get_run_logger().info("stream %s enabled; changes from now on will be replayed", stream_arn)
    return stream_arn


@dataclass
class LiveSync:
    """One running live sync in this process: how to stop it, whether it has caught up, how far it is."""

    stop: threading.Event = field(default_factory=threading.Event)
    caught_up: threading.Event = field(default_factory=threading.Event)
    records: int = 0
    lag_seconds: float = 0.0


_live_syncs: dict[str, LiveSync] = {}
_lock = threading.Lock()


def live_sync(migration_id: str) -> LiveSync:
    with _lock:
        return _live_syncs.setdefault(migration_id, LiveSync())


def stop_all() -> None:
    """Ask every live sync in this process to stop after the batch in hand (Ctrl-C, SIGTERM)."""
    with _lock:
        for sync in _live_syncs.values():
            sync.stop.set()


@task(
    name="live-sync",
    task_run_name="live sync {job.source} -> {job.target}",
    **RETRYING,
)
def follow_source_stream(job: TableJob, stream_arn: str, idle_seconds: float | None = None) -> FollowResult:
    """Apply the source's stream to the target with the Lambda's apply function, checkpointing each
    shard, until idle for `idle_seconds` or until stopped. Rejected changes go to the dead letters."""
    clients = table_clients(job)
    state = state_store(job, clients)
    migration = state.load(job.migration_id)
    sync = live_sync(job.migration_id)
    logger = get_run_logger()

    def apply(records: list[dict]) -> int:
        result = apply_stream_records(clients.target, job.target, records,
                                      source_client=clients.source, source_table=job.source)
        for rejected in result.rejected:
            state.save_dead_letter(job.migration_id, rejected.sequence_number, rejected.key, rejected.error)
        return len(result.rejected)

    def on_batch(count: int, lag: float) -> None:
        sync.records += count
        sync.lag_seconds = lag

    with stop_on_signals(sync):
        result = follow_stream(
            clients.source_streams, stream_arn, dict(migration.shards), apply,
            save_checkpoint=lambda shard, sequence: state.save_shard(job.migration_id, shard, sequence),
            idle_seconds=idle_seconds, stop=sync.stop, caught_up=sync.caught_up, on_batch=on_batch,
        )
    logger.info("live sync applied %d records from %d shards (%d rejected)", result.records, result.shards,
                result.rejected)
    return result


@contextmanager
def stop_on_signals(sync: LiveSync):
    """Run alone (the poller), Ctrl-C and SIGTERM stop live sync after the batch in hand. Prefect
    installs its own SIGTERM handler when a flow starts, so this one goes in after it, and out again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = lambda signum, frame: sync.stop.set()  # noqa: E731
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@task(name="catch-up-gate", task_run_name="wait for {job.target} to catch up", cache_policy=NO_CACHE)
def wait_for_catch_up(job: TableJob, timeout: float = CATCH_UP_TIMEOUT_SECONDS) -> None:
    """The catch-up gate: return once live sync has read everything in the stream (lag under a second)."""
    state = state_store(job, table_clients(job))
    state.set_phase(state.load(job.migration_id), "catch_up")
    if not live_sync(job.migration_id).caught_up.wait(timeout):
        raise TimeoutError(f"live sync of {job.target} did not catch up within {timeout:.0f}s")


@task(name="stop-live-sync", task_run_name="stop live sync {job.source} -> {job.target}", cache_policy=NO_CACHE)
def stop_live_sync(job: TableJob) -> None:
    live_sync(job.migration_id).stop.set()
