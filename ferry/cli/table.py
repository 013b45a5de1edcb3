"""The table commands: `ferry table`, `ferry verify table`, `ferry sync table`."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ferry.aws import TableClients, check_sides, table_clients
from ferry.cli import render
from ferry.cli.options import (DEFAULT_LIVE_SYNC, JsonOutput, LiveSync, ReportDir, StateTable, UntilIdle, Verbose,
                               build_job, flow_arguments, print_json, use_prefect, with_aws_sides)
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.dynamo.preflight import check_syncable, check_table_job, check_verifiable
from ferry.errors import BadInput
from ferry.state import StateStore

EXIT_OK, EXIT_DIFFERENT = 0, 1

SourceTable = Annotated[str, typer.Argument(metavar="SOURCE", help="Source table name.")]
TargetTable = Annotated[str, typer.Argument(metavar="TARGET", help="Target table name.")]
Segments = Annotated[Optional[int], typer.Option("--segments", help="Parallel scan segments (default: from table size).")]


def connect(job: TableJob) -> TableClients:
    """The job's clients, once both sides have a region and credentials (else one BadInput line)."""
    check_sides(job.source_aws, job.target_aws)
    return table_clients(job.source_aws, job.target_aws)


@with_aws_sides
def migrate(
    source: SourceTable,
    target: TargetTable,
    segments: Segments = None,
    page_size: Annotated[Optional[int], typer.Option("--page-size", help="Items per scan page (default: 1 MB pages).")] = None,
    create_target: Annotated[bool, typer.Option("--create-target", help="Create the target like the source.")] = False,
    allow_nonempty: Annotated[bool, typer.Option("--allow-nonempty", help="Copy into a target that already has items.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Forget checkpoints and copy everything again; the final verification then repairs what a copy cannot see (items deleted from the source since).")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the final verification.")] = False,
    live_sync: LiveSync = DEFAULT_LIVE_SYNC,
    max_read_units: Annotated[Optional[float], typer.Option(
        "--max-read-units", help="Read capacity units per second the backfill may take from the source.")] = None,
    max_write_units: Annotated[Optional[float], typer.Option(
        "--max-write-units", help="Write capacity units per second the backfill may take from the target.")] = None,
    read_capacity_percent: Annotated[Optional[float], typer.Option(
        "--read-capacity-percent", help="Share (%) of the source's provisioned read capacity for the backfill.")] = None,
    write_capacity_percent: Annotated[Optional[float], typer.Option(
        "--write-capacity-percent", help="Share (%) of the target's provisioned write capacity for the backfill.")] = None,
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Migrate SOURCE into TARGET: stream, live sync, backfill, catch up, verify. Rerun the same command
    to resume."""
    job = build_job(TableJob, source=source, target=target, segments=segments, page_size=page_size,
                    create_target=create_target, allow_nonempty=allow_nonempty, restart=restart,
                    verify=not no_verify, live_sync=live_sync, state_table=state_table,
                    max_read_units=max_read_units, max_write_units=max_write_units,
                    read_capacity_percent=read_capacity_percent, write_capacity_percent=write_capacity_percent,
                    source_aws=source_aws, target_aws=target_aws)
    clients = connect(job)
    state = StateStore(clients.target, job.state_table)
    checked = check_table_job(job, clients, state)  # bad input fails here, in a second, before Prefect starts
    if not json_output and (estimate := render.backfill_estimate(job, checked.source, checked.target)):
        render.err.print(estimate, highlight=False)
    use_prefect(verbose)
    from flows.migrate_table import migrate_table
    from ferry.cli.progress import BackfillProgress

    started = time.monotonic()
    with render.unless(json_output, lambda: BackfillProgress(state, job.migration_id,
                                                             checked.plan.source_item_estimate, render.err)):
        result = migrate_table(**flow_arguments(job, migrate_table))
    elapsed = time.monotonic() - started
    if json_output:
        print_json(render.migration_json(result, elapsed))
    else:
        render.migration(result, elapsed, job.verify)
    return EXIT_DIFFERENT if job.verify and not result.verified else EXIT_OK


@with_aws_sides
def verify(
    source: SourceTable,
    target: TargetTable,
    segments: Segments = None,
    repair: Annotated[bool, typer.Option("--repair", help="Fix every confirmed difference from the source.")] = False,
    sample: Annotated[Optional[float], typer.Option("--sample", help="Check only this random fraction (0-1) of keys.")] = None,
    report_dir: ReportDir = None,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Compare SOURCE and TARGET item by item (via a hash tree), naming every difference.
    Exit 0 equal (after --repair, if given), 1 different."""
    if sample is not None and not 0 < sample <= 1:
        raise BadInput(f"--sample must be a fraction between 0 and 1, got {sample}")
    if sample is not None and repair:
        raise BadInput("--repair needs a full verification: drop --sample")
    job = build_job(TableJob, source=source, target=target, segments=segments, source_aws=source_aws,
                    target_aws=target_aws)
    check_verifiable(job, connect(job), repair)
    use_prefect(verbose)
    from flows.verify_table import verify_table
    from ferry import report as reports

    result = verify_table(**flow_arguments(job, verify_table, repair=repair, sample=sample, report_dir=report_dir,
                                           fail_on_difference=False))
    if json_output:
        print_json(reports.summary(result))
    else:
        render.verification(result)
    return EXIT_OK if result.equal else EXIT_DIFFERENT


@with_aws_sides
def sync(
    source: SourceTable,
    target: TargetTable,
    until_idle: UntilIdle = None,
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Apply the source's stream to the target (the local poller). Runs until Ctrl-C/SIGTERM, which
    stop it cleanly after the batch in hand, or with --until-idle until caught up and idle."""
    if until_idle is not None and until_idle < 0:
        raise BadInput(f"--until-idle must be zero or more seconds, got {until_idle}")
    job = build_job(TableJob, source=source, target=target, state_table=state_table, source_aws=source_aws,
                    target_aws=target_aws)
    clients = connect(job)
    check_syncable(job, clients, StateStore(clients.target, job.state_table))
    use_prefect(verbose)
    from flows.sync_table import sync_table
    from ferry.cli.progress import LiveSyncLine

    started = time.monotonic()
    with render.unless(json_output, lambda: LiveSyncLine(job.migration_id, render.err)):
        result = sync_table(**flow_arguments(job, sync_table, idle_seconds=until_idle))
    summary = render.live_sync_summary(source, target, result, time.monotonic() - started)
    if json_output:
        print_json(summary)
    else:
        render.live_sync(result, summary)
    return EXIT_OK
