"""What every command shares: its options, turning them into a job, and starting Prefect quietly.

One convention for both kinds of resource: a command builds its job with `build_job(TableJob, ...)`
or `build_job(BucketJob, ...)` (a bad value becomes one BadInput line), then calls its module's
`connect(job)`, which runs every read-only check before Prefect starts, so a typo fails in a second.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import signal
import sys
import threading
import typing
from typing import Annotated, Optional, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from ferry.config import AwsSide, LiveSyncMode
from ferry.errors import BadInput
from ferry.stopping import SIGTERM_IS_OURS

# Options shared by every command that talks to AWS. Unset means: the standard AWS environment.
SourceProfile = Annotated[Optional[str], typer.Option("--source-profile", help="AWS profile for the source side.")]
TargetProfile = Annotated[Optional[str], typer.Option("--target-profile", help="AWS profile for the target side.")]
SourceRole = Annotated[Optional[str], typer.Option("--source-role-arn", help="Role to assume for the source side.")]
TargetRole = Annotated[Optional[str], typer.Option("--target-role-arn", help="Role to assume for the target side.")]
SourceRegion = Annotated[Optional[str], typer.Option("--source-region", help="Region of the source.")]
TargetRegion = Annotated[Optional[str], typer.Option("--target-region", help="Region of the target.")]
EndpointUrl = Annotated[Optional[str], typer.Option("--endpoint-url", help="AWS endpoint for both sides (moto, LocalStack).")]

StateTable = Annotated[str, typer.Option("--state-table", help="DynamoDB table (target side) holding checkpoints.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs on the console.")]
LiveSync = Annotated[str, typer.Option("--live-sync", help="'poller' (local, default) or 'lambda' (deployed).")]
UntilIdle = Annotated[Optional[float], typer.Option("--until-idle", help="Stop once caught up and idle this many seconds.")]
ReportDir = Annotated[Optional[str], typer.Option("--report-dir", help="Write CSV and Markdown reports here.")]
DEFAULT_LIVE_SYNC: LiveSyncMode = "poller"

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


Job = TypeVar("Job", bound=BaseModel)


def build_job(kind: type[Job], **fields) -> Job:
    """Validate the user's input into a job; a bad value becomes a one-line BadInput naming the option."""
    try:
        return kind(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: " if first["type"] == "literal_error" else ""
        raise BadInput(where + str(first["msg"]).removeprefix("Value error, ")) from None


def flow_arguments(job: BaseModel, flow, **extra) -> dict:
    """The job's fields that `flow` takes as parameters, plus `extra`."""
    accepted = inspect.signature(flow.fn).parameters
    return {name: value for name, value in dict(job).items() if name in accepted} | extra


_prefect_settings = contextlib.ExitStack()  # held for the life of the command


_flows = {"started": False}


def flows_started() -> bool:
    """Whether this command has gone past its checks into a flow (which may write): before that,
    whatever stops it is the user's to fix, and nothing was written."""
    return _flows["started"]


def interrupt(signum, frame):
    """SIGTERM as Ctrl-C. Prefect's own handler, installed while a flow runs, hands the signal back
    to this one once the flow run has ended (its state recorded)."""
    raise KeyboardInterrupt


def use_prefect(verbose: bool) -> None:
    """Quiet Prefect's console (the UI keeps every log) and keep it offline, unless told otherwise.

    Flows run from the CLI send no heartbeats: the terminal watches them, and at the end of every
    run Prefect waits up to a second for its heartbeat thread. Deployment runs keep heartbeats."""
    _flows["started"] = True
    if threading.current_thread() is threading.main_thread():  # SIGTERM ends a run as Ctrl-C does: one line, 130
        signal.signal(signal.SIGTERM, interrupt)
        SIGTERM_IS_OURS.set()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    _prefect_settings.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))


def print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
