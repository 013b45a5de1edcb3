"""`ferry status table|bucket|PLAN`: what a migration has done and how its live sync is, read-only.

The older form `ferry status [SOURCE TARGET] [--bucket]` still works: `StatusGroup` reads it as
`ferry status table ...` (or `bucket` with --bucket).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ferry.aws import check_sides, client
from ferry.cli import render
from ferry.cli.options import JsonOutput, StateTable, build_job, print_json, with_aws_sides
from ferry.config import DEFAULT_STATE_TABLE, AwsSide, TableJob
from ferry.errors import BadInput
from ferry.state import StateStore

EXIT_OK, EXIT_UNHEALTHY = 0, 1
KINDS = ("table", "bucket", "plan")


class StatusGroup(TyperGroup):
    """`ferry status table|bucket ...`, and the older `ferry status [SOURCE TARGET] [--bucket]`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0].endswith((".yaml", ".yml")):  # `ferry status PLAN`
            args = ["plan", *args]
        if not args or args[0] not in KINDS and args[0] not in ("--help", "-h"):
            args = ["bucket", *without_state_table(a for a in args if a != "--bucket")] if "--bucket" in args \
                else ["table", *args]
        return super().parse_args(ctx, args)


def without_state_table(args) -> list[str]:
    """The older bucket form accepted (and ignored) --state-table; the bucket command has none."""
    kept, skip = [], False
    for arg in args:
        if skip or arg == "--state-table":
            skip = not skip
            continue
        if not arg.startswith("--state-table="):
            kept.append(arg)
    return kept


@with_aws_sides
def table(
    source: Annotated[Optional[str], typer.Argument(help="Source table (with TARGET: one migration).")] = None,
    target: Annotated[Optional[str], typer.Argument(help="Target table.")] = None,
    json_output: JsonOutput = False,
    state_table: StateTable = DEFAULT_STATE_TABLE,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """Every table migration recorded in the state table (or one, with SOURCE and TARGET): its phase
    and per-segment progress."""
    if (source is None) != (target is None):
        raise BadInput("give both SOURCE and TARGET to show one migration, or neither to list all")
    check_sides(None, target_aws)
    store = StateStore(client(target_aws, "dynamodb"), state_table)
    if source:
        job = build_job(TableJob, source=source, target=target, state_table=state_table, target_aws=target_aws,
                        source_aws=source_aws)
        migration = store.load(job.migration_id)
        if migration is None:
            raise BadInput(f"no migration of {source} into {target} is recorded in {state_table!r}")
        migrations = [migration]
    else:
        migrations = store.list_all()
    if json_output:
        print_json({"migrations": [render.migration_state_json(m) for m in migrations]})
    else:
        render.migration_states(migrations, state_table, one=source is not None)
    return EXIT_OK


@with_aws_sides
def bucket(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Source bucket.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="Target bucket.")],
    json_output: JsonOutput = False,
    source_aws: AwsSide = AwsSide(),
    target_aws: AwsSide = AwsSide(),
) -> int:
    """The live sync of one bucket: events routed, queued, in flight, dead letters, who applies them.
    Exit 1 when events are dead-lettered or no longer routed (keys may differ)."""
    from ferry.s3.events import sync_status

    check_sides(source_aws, None)
    status = sync_status(client(source_aws, "sqs"), client(source_aws, "s3"), client(source_aws, "events"),
                         client(source_aws, "lambda"), source, target)
    if json_output:
        print_json(asdict(status))
    else:
        render.bucket_sync_status(status)
    return EXIT_OK if status.events_routed and not status.dead_letters else EXIT_UNHEALTHY
