"""Preflight: every check that can fail because of the user's input runs here, before any write.

It decides whether this run is new or resumes an earlier one (the state table remembers), and how
many segments the backfill uses (a resumed run keeps the segmentation its checkpoints belong to).
Permissions are checked with IAM's policy simulator where it answers (ferry/permissions.py). Only
when every check has passed does it write, in this order: the state table, the target table (with
--create-target), the source's stream, the migration's record. Where the simulator did not answer, a
first write that is denied ends the run as bad input: the source is untouched, and the line names the
empty tables this run created.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ferry.aws import TableClients
from ferry.config import TableJob
from ferry.dynamo import schema
from ferry import lease
from ferry.dynamo.backfill import choose_segments, clear_markers
from ferry.dynamo.capacity import provisioned_units
from ferry.dynamo.stream import STREAM_RETENTION_HOURS, check_stream_compatible, enable_stream, stream_replaced
from ferry.cutover import check_not_held
from ferry.errors import BadInput, CannotContinue, denied_line
from ferry.iam import TableRef, table_source_statements, table_target_statements
from ferry.permissions import caller_or_none, check_allowed, simulator
from ferry.state import MigrationState, StateStore
from lambdas import journal

log = logging.getLogger(__name__)


@dataclass
class TablePlan:
    """What the rest of the flow needs to know, decided once by preflight."""

    migration_id: str
    total_segments: int
    resumed: bool
    source_item_estimate: int
    key_names: list[str] = field(default_factory=list)  # the table's key attributes, hash key first
    check_versions: bool = False  # live sync of an earlier run may have marked the target (see backfill.py)
    notes: list[str] = field(default_factory=list)


@dataclass
class Checked:
    """What the read-only checks found, for the writes that follow them."""

    plan: TablePlan
    source: dict
    target: dict | None
    previous: MigrationState | None


def check_table_job(job: TableJob, clients: TableClients, state: StateStore, holder: str | None = None) -> Checked:
    """Every check that bad input can fail, reading only. Raises BadInput with a one-line message.

    The CLI calls this before starting Prefect, so a typo fails in a second without a failed flow run.
    """
    if job.source == job.target and job.source_aws == job.target_aws:
        raise BadInput(f"source and target are the same table {job.source!r}: name a different target")
    if job.state_table in (job.source, job.target):
        raise BadInput(f"--state-table {job.state_table!r} is also a table being migrated: choose another name")

    check_permissions(job, clients, state)
    check_not_held(state, job.migration_id, job.source, job.target)  # a plan switched the service the other way
    source = schema.require_table(clients.source, job.source, "source")
    check_stream_compatible(source)
    target = schema.describe_table(clients.target, job.target)
    if target is None and not job.create_target:
        schema.require_table(clients.target, job.target, "target")  # raises the one-line error
    if target is not None and target["TableArn"] == source["TableArn"]:  # two names for one table: profiles, regions
        raise BadInput(f"source and target are the same table ({source['TableArn']}): name a different target")
    if target is not None:
        schema.check_key_schemas_match(source, target)

    check_capacity_shares(job, source, target or source)  # a target to create gets the source's capacity

    if other := lease.held_by_another(state, job.migration_id, holder):
        raise BadInput(lease.already_running(job.source, job.target, other))
    previous = state.load(job.migration_id)
    resumed = previous is not None and not job.restart
    if resumed and previous.target_identity and previous.target_identity != schema.identity(target):
        raise BadInput(
            f"target table {job.target!r} is not the table this migration's checkpoints were written for (it was "
            "deleted and created again since): run again with --restart (it copies everything again and its verification repairs what the copy cannot see)"
        )
    if target is not None and not resumed and not job.allow_nonempty and not (job.restart and previous):
        if not schema.is_empty(clients.target, job.target):
            raise BadInput(
                f"target table {job.target!r} is not empty and no earlier Ferry run into it is recorded "
                f"in {job.state_table!r}: pass --allow-nonempty to copy into it anyway"
            )

    if resumed and previous.stream_arn and stream_replaced(source, previous.stream_arn):
        raise BadInput(
            f"the stream of {job.source!r} changed since this migration started (it was disabled or "
            "re-enabled), so changes made in between are lost: run again with --restart"
        )

    if resumed and job.live_sync == "poller":
        check_retention_covers(job, previous)
        check_no_lambda_applying(job, previous)

    notes: list[str] = []
    if resumed:
        segments = previous.total_segments
        if job.segments and job.segments != segments:
            notes.append(f"resuming with the {segments} segments of the first run (--segments {job.segments} ignored)")
    else:
        segments = job.segments or choose_segments(source.get("TableSizeBytes", 0))
    plan = TablePlan(
        migration_id=job.migration_id,
        total_segments=segments,
        resumed=resumed,
        source_item_estimate=source.get("ItemCount", 0),
        key_names=[name for name, _, _ in schema.key_schema(source)],
        notes=notes,
    )
    return Checked(plan, source, target, previous)


def check_permissions(job: TableJob, clients: TableClients, state: StateStore) -> None:
    """Every action of this migration on both sides, on the exact ARNs, through IAM's simulator
    (creating the state table only where it does not exist yet)."""
    command = f"ferry iam-policy table {job.source} {job.target}" + (" --create-target" if job.create_target else "")
    if source_who := caller_or_none(job.source_aws, "source"):
        source = TableRef(clients.source.meta.region_name, source_who.account, job.source)
        check_allowed(simulator(job.source_aws), "source", source_who,
                      table_source_statements(source, job.create_target), command)
    if target_who := caller_or_none(job.target_aws, "target"):
        region, account = clients.target.meta.region_name, target_who.account
        statements = table_target_statements(TableRef(region, account, job.target),
                                             TableRef(region, account, job.state_table), job.create_target)
        if state.exists():
            statements = [{**s, "Action": [a for a in s["Action"] if a != "dynamodb:CreateTable"]}
                          if s["Sid"] == "StateTable" else s for s in statements]
        check_allowed(simulator(job.target_aws), "target", target_who, statements, command)


def check_capacity_shares(job: TableJob, source: dict, target: dict) -> None:
    """A share of provisioned capacity needs a provisioned table to take it from."""
    for side, percent, name, description in (("read", job.read_capacity_percent, job.source, source),
                                             ("write", job.write_capacity_percent, job.target, target)):
        if percent is not None and provisioned_units(description, side) is None:
            raise BadInput(f"--{side}-capacity-percent needs a table with provisioned capacity, and {name!r} is "
                           f"on-demand: give --max-{side}-units instead")


def check_retention_covers(job: TableJob, previous) -> None:
    """A poller run resumed after a pause: the stream only holds the last 24 hours, so if the poller
    last proved itself caught up longer ago than that, changes made in between may have expired
    unread (shards come and go every few hours: no checkpointed one need be missing to show it)."""
    if previous.read_through is None:
        return
    paused = time.time() - previous.read_through
    if paused > STREAM_RETENTION_HOURS * 3600:
        raise BadInput(
            f"live sync of {job.source} into {job.target} last read the stream {paused / 3600:.0f} h ago, longer than "
            "its 24-hour retention: changes made in between may be lost; run 'ferry table SOURCE TARGET --restart' "
            "(it copies everything again and repairs what the copy cannot see)")


LAMBDA_ACTIVE_SECONDS = 900  # a Lambda that applied a batch this recently is taken to be running


def check_no_lambda_applying(job: TableJob, migration: MigrationState) -> None:
    """A poller beside the live-sync Lambda would be a second applier (the Lambda holds no lease)."""
    live = migration.live_sync
    if live is not None and live.mode == "lambda" and live.since() < LAMBDA_ACTIVE_SECONDS:
        raise BadInput(
            f"the live-sync Lambda applies the stream of {job.source} into {job.target} (its last batch "
            f"{live.since():.0f} s ago): disable its event source mapping first, or keep it and skip the poller")


def preflight_table(job: TableJob, clients: TableClients, state: StateStore, holder: str) -> TablePlan:
    """Check everything, then take the live-sync lease for `holder` (this run: its poller renews it),
    prepare the target and the state record. Safe to rerun."""
    checked = check_table_job(job, clients, state, holder)
    plan, previous = checked.plan, checked.previous
    target = first_writes(job, clients, state, checked)
    if other := lease.take(state, job.migration_id, holder):  # taken in the seconds since the check
        raise CannotContinue(lease.already_running(job.source, job.target, other))
    if state.markers_noted(job.migration_id):
        if job.restart:  # the earlier run's versions would make the new backfill skip those keys
            clear_markers(clients.target, job.target, plan.key_names, plan.total_segments)
            state.markers_cleared(job.migration_id)
        else:  # an earlier run's live sync marked keys: this run's backfill leaves them out
            plan.check_versions = True
    if job.restart and previous and previous.stream_arn and stream_replaced(checked.source, previous.stream_arn):
        journal.clear(state.client, state.table_name, job.migration_id)  # another stream's sequence numbers
    target_identity = schema.identity(target)
    if plan.resumed:
        previous.runs += 1
        previous.target_identity = target_identity
        state.set_phase(previous, previous.phase)
    elif job.restart and previous is not None:  # one write: the earlier run's checkpoints stop counting
        state.begin(job.migration_id, job.source, job.target, plan.total_segments, target_identity,
                    generation=previous.generation + 1)
        state.forget_stale(job.migration_id, previous.generation + 1)
    else:
        state.begin(job.migration_id, job.source, job.target, plan.total_segments, target_identity)
    for note in plan.notes:
        log.warning(note)
    return plan


def first_writes(job: TableJob, clients: TableClients, state: StateStore, checked: Checked) -> dict:
    """The state table, the target, then the source's stream: the source is written last, so a
    permission refused on the way leaves it as it was, and only empty tables on the target side (said
    in the line). Nothing is undone: a stream another run enabled meanwhile is never turned off.
    Returns the target's description."""
    created: list[str] = []
    try:
        if state.ensure_table():
            created.append(f"the state table {job.state_table!r}")
        target = checked.target
        if target is None:
            log.info("creating target table %s like %s", job.target, job.source)
            target = schema.create_table_like(clients.source, clients.target, checked.source, job.target)
            created.append(f"the target table {job.target!r}")
        if job.create_target:  # every run: a clone interrupted half-way is completed
            schema.complete_clone(clients.source, clients.target, checked.source, target)
        enable_stream(clients.source, clients.source_streams, job.source)
        return target
    except ClientError as error:
        if (line := denied_line(error)) is None:
            raise
        if created:
            line += f"; this run created {' and '.join(created)}, empty, kept for the rerun"
        raise BadInput(line) from None


def check_verifiable(job: TableJob, clients: TableClients, repair: bool = False) -> int:
    """Both tables exist and share a key schema, and a repair does not meet an unfinished backfill
    (its images could replace what the repair writes). Returns how many segments to scan them with."""
    source = schema.require_table(clients.source, job.source, "source")
    target = schema.require_table(clients.target, job.target, "target")
    schema.check_key_schemas_match(source, target)
    migration = StateStore(clients.target, job.state_table).load(job.migration_id) if repair else None
    if migration is not None and not migration.backfilled:
        raise BadInput(f"the backfill of {job.source} into {job.target} has not finished: run "
                       f"'ferry table {job.source} {job.target}' to finish it, then repair")
    return job.segments or choose_segments(max(source.get("TableSizeBytes", 0), target.get("TableSizeBytes", 0)))


def check_syncable(job: TableJob, clients: TableClients, state: StateStore) -> str:
    """Live sync needs a recorded migration whose stream is still the source's stream."""
    migration = state.load(job.migration_id)
    if migration is None or not migration.stream_arn:
        raise BadInput(f"no migration of {job.source} into {job.target} is recorded in {job.state_table!r}: "
                         f"run 'ferry table {job.source} {job.target}' first")
    check_not_held(state, job.migration_id, job.source, job.target)
    if other := lease.held_by_another(state, job.migration_id):
        raise BadInput(lease.already_running(job.source, job.target, other))
    check_retention_covers(job, migration)
    check_no_lambda_applying(job, migration)
    source = schema.require_table(clients.source, job.source, "source")
    schema.require_table(clients.target, job.target, "target")
    if stream_replaced(source, migration.stream_arn):
        raise BadInput(f"the stream of {job.source!r} is not the one this migration started from (it was "
                         "disabled or replaced), so changes may be lost: run 'ferry table ... --restart'")
    return migration.stream_arn
