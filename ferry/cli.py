"""The `ferry` command: parse, build the configuration, run a flow, render its result.

Exit codes (a stable contract for scripts): 0 success, 1 verification found differences,
2 bad input (one line on stderr, nothing written), 3 runtime failure after retries.
With --json the last line of stdout is one JSON object.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import threading
import time
import typing
from dataclasses import asdict
from typing import Annotated, Optional

import typer
from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError, ProfileNotFound
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ferry.aws import TableClients, table_clients
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.dynamo.preflight import check_syncable, check_table_job, check_verifiable
from ferry.errors import FerryError
from ferry.state import StateStore

EXIT_OK, EXIT_DIFFERENT, EXIT_BAD_INPUT, EXIT_FAILED = 0, 1, 2, 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Move live DynamoDB tables to a new home without stopping the service, and prove nothing was lost.",
)
verify_app = typer.Typer(no_args_is_help=True, help="Check that a target is an exact copy of its source.")
app.add_typer(verify_app, name="verify")
sync_app = typer.Typer(no_args_is_help=True, help="Keep a migrated target in step with its source (live sync).")
app.add_typer(sync_app, name="sync")

out = Console()
err = Console(stderr=True)

# Options shared by every command that talks to AWS. Unset means: the standard AWS environment.
SourceProfile = Annotated[Optional[str], typer.Option("--source-profile", help="AWS profile for the source side.")]
TargetProfile = Annotated[Optional[str], typer.Option("--target-profile", help="AWS profile for the target side.")]
SourceRole = Annotated[Optional[str], typer.Option("--source-role-arn", help="Role to assume for the source side.")]
TargetRole = Annotated[Optional[str], typer.Option("--target-role-arn", help="Role to assume for the target side.")]
SourceRegion = Annotated[Optional[str], typer.Option("--source-region", help="Region of the source table.")]
TargetRegion = Annotated[Optional[str], typer.Option("--target-region", help="Region of the target table.")]
EndpointUrl = Annotated[Optional[str], typer.Option("--endpoint-url", help="AWS endpoint for both sides (moto, LocalStack).")]
StateTable = Annotated[str, typer.Option("--state-table", help="DynamoDB table (target side) holding checkpoints.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]
SourceTable = Annotated[str, typer.Argument(metavar="SOURCE", help="Source table name.")]
TargetTable = Annotated[str, typer.Argument(metavar="TARGET", help="Target table name.")]
SourceBucket = Annotated[str, typer.Argument(metavar="SOURCE", help="Source bucket.")]
TargetBucket = Annotated[str, typer.Argument(metavar="TARGET", help="Target bucket.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs on the console.")]
Segments = Annotated[Optional[int], typer.Option("--segments", help="Parallel scan segments (default: from table size).")]


SIDE_OPTIONS = {
    "source_profile": SourceProfile, "target_profile": TargetProfile,
    "source_role_arn": SourceRole, "target_role_arn": TargetRole,
    "source_region": SourceRegion, "target_region": TargetRegion,
    "endpoint_url": EndpointUrl,
}


def with_aws_sides(command):
    """Give a command the AWS options of both sides (--source-profile ... --endpoint-url) and call it
    with them built into `source_aws` and `target_aws`: one definition for every command."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)  # the Annotated options, not strings
    kept = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
            if p.name not in ("source_aws", "target_aws")]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in SIDE_OPTIONS.items()]

    @functools.wraps(command)
    def run(**options):
        side = {name: options.pop(name) for name in SIDE_OPTIONS}
        return command(
            **options,
            source_aws=AwsSide(profile=side["source_profile"], role_arn=side["source_role_arn"],
                               region=side["source_region"], endpoint_url=side["endpoint_url"]),
            target_aws=AwsSide(profile=side["target_profile"], role_arn=side["target_role_arn"],
                               region=side["target_region"], endpoint_url=side["endpoint_url"]),
        )

    run.__signature__ = signature.replace(parameters=kept + added)
    run.__annotations__ = {p.name: p.annotation for p in kept} | SIDE_OPTIONS
    del run.__wrapped__  # Typer must read the signature above, not the command's own
    return run


def build_job(**fields) -> TableJob:
    """Validate the user's input into a TableJob; a bad value becomes a one-line FerryError."""
    try:
        return TableJob(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: " if first["type"] == "literal_error" else ""
        raise FerryError(where + str(first["msg"]).removeprefix("Value error, ")) from None


def connect(job: TableJob) -> TableClients:
    """Build the clients now, so a missing profile, region or credentials fails fast and plainly."""
    clients = table_clients(job.source_aws, job.target_aws)
    for side, c in (("source", clients.source), ("target", clients.target)):
        if c._request_signer._credentials is None:
            raise FerryError(
                f"no AWS credentials for the {side} side: set AWS_PROFILE or access keys, "
                f"or pass --{side}-profile / --{side}-role-arn"
            )
    return clients


def use_prefect(verbose: bool) -> None:
    """Quiet Prefect's console (the UI keeps every log) and keep it offline, unless told otherwise.

    Flows run from the CLI send no heartbeats: the terminal watches them, and at the end of every
    run Prefect waits up to a second for its heartbeat thread. Deployment runs keep heartbeats."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    _prefect_settings.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))


_prefect_settings = contextlib.ExitStack()  # held for the life of the command


def print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


# --- ferry table ---------------------------------------------------------------------------------
@app.command("table")
@with_aws_sides
def table_command(
    source: SourceTable,
    target: TargetTable,
    segments: Segments = None,
    page_size: Annotated[Optional[int], typer.Option("--page-size", help="Items per scan page (default: 1 MB pages).")] = None,
    create_target: Annotated[bool, typer.Option("--create-target", help="Create the target like the source.")] = False,
    allow_nonempty: Annotated[bool, typer.Option("--allow-nonempty", help="Copy into a target that already has items.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Forget checkpoints and copy everything again.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the final verification.")] = False,
    live_sync: Annotated[str, typer.Option("--live-sync", help="'poller' (local, default) or 'lambda' (deployed).")] = "poller",
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Migrate SOURCE into TARGET: stream, backfill, catch up, verify. Rerun the same command to resume."""
    job = build_job(source=source, target=target, segments=segments, page_size=page_size,
                    create_target=create_target, allow_nonempty=allow_nonempty, restart=restart,
                    verify=not no_verify, live_sync=live_sync, state_table=state_table,
                    source_aws=source_aws, target_aws=target_aws)
    clients = connect(job)
    state = StateStore(clients.target, job.state_table)
    check_table_job(job, clients, state)  # bad input fails here, in a second, before Prefect starts
    use_prefect(verbose)
    from flows.migrate_table import migrate_table
    from ferry.progress import BackfillProgress

    started = time.monotonic()
    if json_output:
        result = migrate_table(**dict(job))
    else:
        estimate = _item_estimate(clients, job.source)
        with BackfillProgress(state, job.migration_id, estimate, err):
            result = migrate_table(**dict(job))
    elapsed = time.monotonic() - started

    if json_output:
        print_json({k: asdict(result)[k] for k in (
            "source", "target", "source_items", "target_items", "copied", "resumed", "verified",
            "segments", "stream_records", "source_checksum", "target_checksum")} | {"seconds": round(elapsed, 2)})
    else:
        _render_migration(result, elapsed, job.verify)
    if job.verify and not result.verified:
        return EXIT_DIFFERENT
    return EXIT_OK


def _item_estimate(clients: TableClients, table: str) -> int:
    try:
        return clients.source.describe_table(TableName=table)["Table"].get("ItemCount", 0)
    except Exception:  # preflight reports a missing table properly
        return 0


def _render_migration(result, elapsed: float, verify: bool) -> None:
    summary = Table(title=f"{result.source} -> {result.target}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("copied by this run", f"{result.copied:,} items")
    summary.add_row("stream changes replayed", f"{result.stream_records:,}")
    summary.add_row("segments", str(result.segments))
    summary.add_row("resumed an earlier run", "yes" if result.resumed else "no")
    if verify:
        summary.add_row("source items / checksum", f"{result.source_items:,} / {result.source_checksum}")
        summary.add_row("target items / checksum", f"{result.target_items:,} / {result.target_checksum}")
        summary.add_row("verified", "[green]EQUAL[/green]" if result.verified else "[red]DIFFERENT[/red]")
    else:
        summary.add_row("verified", "skipped (--no-verify)")
    summary.add_row("time", f"{elapsed:.1f}s")
    out.print(summary)


# --- ferry verify table ------------------------------------------------------------------------
@verify_app.command("table")
@with_aws_sides
def verify_table_command(
    source: SourceTable,
    target: TargetTable,
    segments: Segments = None,
    repair: Annotated[bool, typer.Option("--repair", help="Fix every confirmed difference from the source.")] = False,
    sample: Annotated[Optional[float], typer.Option("--sample", help="Check only this random fraction (0-1) of keys.")] = None,
    report_dir: Annotated[Optional[str], typer.Option("--report-dir", help="Write CSV and Markdown reports here.")] = None,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Compare SOURCE and TARGET item by item (via a hash tree), naming every difference.
    Exit 0 equal (after --repair, if given), 1 different."""
    if sample is not None and not 0 < sample <= 1:
        raise FerryError(f"--sample must be a fraction between 0 and 1, got {sample}")
    if sample is not None and repair:
        raise FerryError("--repair needs a full verification: drop --sample")
    job = build_job(source=source, target=target, segments=segments, source_aws=source_aws, target_aws=target_aws)
    check_verifiable(job, connect(job))
    use_prefect(verbose)
    from flows.verify_table import verify_table
    from ferry import report as reports

    result = verify_table(source=source, target=target, segments=segments, repair=repair, sample=sample,
                          report_dir=report_dir, fail_on_difference=False,
                          source_aws=source_aws, target_aws=target_aws)
    if json_output:
        print_json(reports.summary(result))
    else:
        _render_verification(result)
    return EXIT_OK if result.equal else EXIT_DIFFERENT


def _render_verification(result) -> None:
    from ferry import report as reports

    table = Table(title=f"{result.source} = {result.target} ?")
    for column in ("side", "table", "items", "checksum"):
        table.add_column(column)
    table.add_row("source", result.source, f"{result.source_items:,}", result.source_checksum)
    table.add_row("target", result.target, f"{result.target_items:,}", result.target_checksum)
    out.print(table)
    differences = reports.differences_frame(result)
    if not differences.empty:
        listed = Table(title=f"differences ({len(differences)})")
        listed.add_column("kind")
        listed.add_column("key")
        for row in differences.head(20).itertuples():
            listed.add_row(row.kind, row.key)
        out.print(listed)
    out.print(reports.headline(result), style="green" if result.equal else "red", highlight=False)


# --- ferry sync table --------------------------------------------------------------------------
@sync_app.command("table")
@with_aws_sides
def sync_table_command(
    source: SourceTable,
    target: TargetTable,
    until_idle: Annotated[Optional[float], typer.Option("--until-idle", help="Stop once caught up and idle this many seconds.")] = None,
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Apply the source's stream to the target (the local poller). Runs until Ctrl-C/SIGTERM, which
    stop it cleanly after the batch in hand, or with --until-idle until caught up and idle."""
    if until_idle is not None and until_idle < 0:
        raise FerryError(f"--until-idle must be zero or more seconds, got {until_idle}")
    job = build_job(source=source, target=target, state_table=state_table, source_aws=source_aws, target_aws=target_aws)
    clients = connect(job)
    check_syncable(job, clients, StateStore(clients.target, job.state_table))
    use_prefect(verbose)
    from flows.sync_table import sync_table
    from tasks.stream import live_sync

    started = time.monotonic()
    sync = live_sync(job.migration_id)
    if json_output:
        result = sync_table(source=source, target=target, idle_seconds=until_idle, state_table=state_table,
                            source_aws=source_aws, target_aws=target_aws)
    else:
        with err.status("live sync starting") as status:
            watcher = threading.Thread(target=_show_lag, args=(sync, status), daemon=True)
            watcher.start()
            result = sync_table(source=source, target=target, idle_seconds=until_idle, state_table=state_table,
                                source_aws=source_aws, target_aws=target_aws)
    elapsed = time.monotonic() - started
    lags = sorted(result.lag_seconds) or [0.0]
    summary = {"source": source, "target": target, "records": result.records, "rejected": result.rejected,
               "shards": result.shards, "lag_p50_seconds": round(lags[len(lags) // 2], 3),
               "lag_p99_seconds": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3),
               "lag_max_seconds": round(lags[-1], 3), "seconds": round(elapsed, 2)}
    if json_output:
        print_json(summary)
    else:
        out.print(f"applied {result.records:,} stream records from {result.shards} shard(s) in {elapsed:.1f}s; "
                  f"{result.rejected} rejected (see 'ferry status'); lag p50 {summary['lag_p50_seconds']}s, "
                  f"p99 {summary['lag_p99_seconds']}s", highlight=False)
    return EXIT_OK


def _show_lag(sync, status) -> None:
    while not sync.stop.is_set():
        status.update(f"live sync: {sync.records:,} records applied, lag {sync.lag_seconds:.2f}s"
                      + (" (caught up)" if sync.caught_up.is_set() else ""))
        time.sleep(0.5)


# --- buckets -------------------------------------------------------------------------------------
Prefix = Annotated[str, typer.Option("--prefix", help="Only keys under this prefix.")]
MultipartThreshold = Annotated[int, typer.Option("--multipart-threshold", help="Bytes above which copies are multipart.")]
PartSize = Annotated[int, typer.Option("--part-size", help="Bytes per part of a multipart copy.")]


def build_bucket_job(**fields):
    from ferry.config import BucketJob

    try:
        return BucketJob(**fields)
    except ValidationError as error:
        raise FerryError(str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def connect_buckets(job):
    from ferry.aws import client
    from ferry.s3.preflight import check_bucket_job

    check_bucket_job(job, client(job.source_aws, "s3"), client(job.target_aws, "s3"))


@app.command("bucket")
@with_aws_sides
def bucket_command(
    source: SourceBucket,
    target: TargetBucket,
    prefix: Prefix = "",
    delete: Annotated[bool, typer.Option("--delete", help="Remove target keys the source does not have.")] = False,
    multipart_threshold: MultipartThreshold = 256 * 2**20,
    part_size: PartSize = 128 * 2**20,
    live_sync: Annotated[str, typer.Option("--live-sync", help="'poller' (local, default) or 'lambda' (deployed).")] = "poller",
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Sync bucket SOURCE into TARGET server-side, apply changes made meanwhile, verify. Rerun to resume."""
    if live_sync not in ("poller", "lambda"):
        raise FerryError(f"--live-sync: expected 'poller' or 'lambda', got {live_sync!r}")
    job = build_bucket_job(source=source, target=target, prefix=prefix, delete=delete,
                           multipart_threshold=multipart_threshold, part_size=part_size,
                           source_aws=source_aws, target_aws=target_aws)
    connect_buckets(job)
    use_prefect(verbose)
    from flows.migrate_bucket import migrate_bucket

    from ferry.progress import BucketProgress

    started = time.monotonic()
    with contextlib.nullcontext() if json_output else BucketProgress(source, target, err):
        result = migrate_bucket(**dict(job), live_sync=live_sync, preflight=False)  # connect_buckets ran it
    elapsed = time.monotonic() - started
    payload = {k: getattr(result, k) for k in ("source", "target", "source_objects", "target_objects", "copied",
                                               "deleted", "bytes_copied", "verified", "events_applied")}
    if json_output:
        print_json(payload | {"seconds": round(elapsed, 2)})
    else:
        summary = Table(title=f"{source} -> {target}", show_header=False)
        for name, value in payload.items():
            summary.add_row(name.replace("_", " "), f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
        summary.add_row("time", f"{elapsed:.1f}s")
        out.print(summary)
    return EXIT_OK if result.verified else EXIT_DIFFERENT


@verify_app.command("bucket")
@with_aws_sides
def verify_bucket_command(
    source: SourceBucket,
    target: TargetBucket,
    prefix: Prefix = "",
    repair: Annotated[bool, typer.Option("--repair", help="Copy missing and changed objects from the source.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="With --repair, also remove keys only the target has.")] = False,
    report_dir: Annotated[Optional[str], typer.Option("--report-dir", help="Write CSV and Markdown reports here.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Also compare every object's additional checksums "
                                       "(CRC32C, SHA256...): one HEAD per object on each side.")] = False,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Compare keys, sizes and checksums of two buckets. Exit 0 equal (after --repair), 1 different."""
    job = build_bucket_job(source=source, target=target, prefix=prefix, delete=delete,
                           source_aws=source_aws, target_aws=target_aws)
    from ferry.aws import client
    from ferry.s3.preflight import require_bucket

    require_bucket(client(source_aws, "s3"), source, "source")
    require_bucket(client(target_aws, "s3"), target, "target")
    use_prefect(verbose)
    from flows.verify_bucket import verify_bucket
    from ferry import report as reports

    report = verify_bucket(**dict(job), repair=repair, report_dir=report_dir, deep=deep, fail_on_difference=False)
    if json_output:
        print_json(report.summary())
    else:
        listed = Table(title=f"{source} = {target} ?")
        for column in ("kind", "count", "first keys"):
            listed.add_column(column)
        for kind in ("missing", "extra", "changed"):
            keys = getattr(report, kind)
            listed.add_row(kind, str(len(keys)), ", ".join(keys[:5]))
        out.print(listed)
        out.print(reports.bucket_headline(report), style="green" if report.equal else "red", highlight=False)
    return EXIT_OK if report.equal else EXIT_DIFFERENT


@sync_app.command("bucket")
@with_aws_sides
def sync_bucket_command(
    source: SourceBucket,
    target: TargetBucket,
    until_idle: Annotated[Optional[float], typer.Option("--until-idle", help="Stop once the queue is idle this many seconds.")] = None,
    json_output: JsonOutput = False,
    verbose: Verbose = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Apply the source bucket's queued events to the target (the local poller for buckets)."""
    job = build_bucket_job(source=source, target=target, source_aws=source_aws, target_aws=target_aws)
    from ferry.aws import client
    from ferry.s3 import events

    try:
        client(source_aws, "sqs").get_queue_url(QueueName=events.queue_names(source, target)[0])
    except Exception:
        raise FerryError(f"no event queue for {source} -> {target}: run 'ferry bucket {source} {target}' first") from None
    use_prefect(verbose)
    from flows.migrate_bucket import sync_bucket

    counts = sync_bucket(**dict(job) | {"idle_seconds": until_idle})
    if json_output:
        print_json({"source": source, "target": target, **counts})
    else:
        out.print(f"applied {counts['messages']:,} event messages; {counts['failed']} failed (retried by the queue)")
    return EXIT_OK


# --- ferry status --------------------------------------------------------------------------------
@app.command("status")
@with_aws_sides
def status_command(
    source: Annotated[Optional[str], typer.Argument(help="Source table or bucket (with TARGET: one migration).")] = None,
    target: Annotated[Optional[str], typer.Argument(help="Target table or bucket.")] = None,
    bucket: Annotated[bool, typer.Option("--bucket", help="SOURCE and TARGET are buckets: show their live sync "
                                         "(events routed, queued, in flight, dead letters).")] = False,
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Every migration recorded in the state table, its phase and per-segment progress; with --bucket,
    the live sync of one bucket."""
    if (source is None) != (target is None) or (bucket and source is None):
        raise FerryError("give both SOURCE and TARGET to show one migration (or, for tables, neither to list all)")
    if bucket:
        return bucket_status(source, target, source_aws, json_output)
    from ferry.aws import client

    store = StateStore(client(target_aws, "dynamodb"), state_table)
    if source:
        job = build_job(source=source, target=target, state_table=state_table, target_aws=target_aws,
                        source_aws=source_aws)
        migration = store.load(job.migration_id)
        if migration is None:
            raise FerryError(f"no migration of {source} into {target} is recorded in {state_table!r}")
        migrations = [migration]
    else:
        migrations = store.list_all()

    if json_output:
        print_json({"migrations": [_status_dict(m) for m in migrations]})
        return EXIT_OK
    if not migrations:
        out.print(f"no migrations recorded in {state_table!r}")
        return EXIT_OK
    overview = Table(title="Ferry migrations")
    for column in ("migration", "phase", "copied", "segments done", "runs", "updated"):
        overview.add_column(column)
    for m in migrations:
        overview.add_row(m.migration_id, m.phase, f"{m.copied:,}", f"{m.segments_done}/{m.total_segments}",
                         str(m.runs), m.updated_at)
    out.print(overview)
    if source:
        detail = Table(title="segments")
        for column in ("segment", "items", "pages", "state"):
            detail.add_column(column)
        for n in range(migrations[0].total_segments):
            seg = migrations[0].segment(n)
            detail.add_row(str(n), f"{seg.items:,}", str(seg.pages),
                           "done" if seg.done else ("copying" if seg.pages else "waiting"))
        out.print(detail)
    return EXIT_OK


def bucket_status(source: str, target: str, source_aws: AwsSide, json_output: bool) -> int:
    """The bucket's live sync; exit 1 when events are dead-lettered or no longer routed (keys may differ)."""
    from ferry.aws import client
    from ferry.s3.events import sync_status

    status = sync_status(client(source_aws, "sqs"), client(source_aws, "s3"), client(source_aws, "lambda"),
                         source, target)
    if json_output:
        print_json(asdict(status))
    else:
        shown = Table(title=f"live sync {source} -> {target}", show_header=False)
        shown.add_row("event queue", status.queue)
        shown.add_row("events routed", "yes" if status.events_routed else "NO")
        shown.add_row("queued / in flight", f"{status.pending:,} / {status.in_flight:,}")
        shown.add_row("dead letters", f"{status.dead_letters:,}")
        shown.add_row("applied by", "Lambda (" + ", ".join(status.lambda_mappings) + ")" if status.lambda_mappings
                      else "the poller (ferry sync bucket)")
        out.print(shown)
    healthy = status.events_routed and not status.dead_letters
    return EXIT_OK if healthy else EXIT_DIFFERENT


def _status_dict(m) -> dict:
    return {
        "migration": m.migration_id, "source": m.source, "target": m.target, "phase": m.phase,
        "copied": m.copied, "segments": m.total_segments, "segments_done": m.segments_done,
        "runs": m.runs, "started_at": m.started_at, "updated_at": m.updated_at, "stream_arn": m.stream_arn,
        "dead_letters": m.dead_letters, "shards": m.shards,
        "segment_progress": [
            {"segment": n, "items": m.segment(n).items, "pages": m.segment(n).pages, "done": m.segment(n).done}
            for n in range(m.total_segments)
        ],
    }


# --- entry point ---------------------------------------------------------------------------------
def fail(message: str) -> None:
    """One plain line on stderr: no wrapping, no markup, no traceback."""
    sys.stderr.write(f"ferry: {message}\n")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every user mistake into one line and the right exit code."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="ferry")
    except typer.Exit as exit_:
        code = exit_.exit_code
    except typer.TyperException as error:  # usage errors: unknown option, missing argument, bad value
        command = getattr(getattr(error, "ctx", None), "command_path", "ferry")
        fail(f"error: {error.format_message()} (see '{command} --help')")
        code = EXIT_BAD_INPUT if error.exit_code == 2 else error.exit_code
    except ProfileNotFound as error:
        fail(f"error: {error}: check --source-profile/--target-profile/AWS_PROFILE against ~/.aws/config")
        code = EXIT_BAD_INPUT
    except (FerryError, NoRegionError, NoCredentialsError) as error:
        fail(f"error: {error}")
        code = EXIT_BAD_INPUT
    except EndpointConnectionError as error:  # after botocore's retries: misconfigured, or the network is down
        fail(f"failed: cannot reach {error.kwargs.get('endpoint_url', 'the AWS endpoint')}: check --endpoint-url or "
             "AWS_ENDPOINT_URL, the region and the network, then rerun the same command (it resumes)")
        code = EXIT_FAILED
    except (KeyboardInterrupt, typer.Abort):
        fail("interrupted; rerun the same command to resume")
        code = 130
    except Exception as error:  # a runtime failure that survived Prefect's retries
        fail(f"failed: {type(error).__name__}: {error}; rerun the same command to resume")
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
