"""The `ferry` command: its command groups, and the one place errors become exit codes.

Exit codes (a stable contract for scripts): 0 success, 1 verification found differences (or, for
`status bucket`, live sync unhealthy), 2 bad input (one line on stderr, nothing written), 3 runtime
failure after retries or a run that cannot continue (rerun the same command to resume).
With --json the last line of stdout is one JSON object.
"""

from __future__ import annotations

import sys

import typer
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError, ProfileNotFound

from ferry.cli import bucket, iam, plan, status, table
from ferry.cli.options import flows_started
from ferry.errors import (BadInput, CannotContinue, DifferencesRemain, NotApproved, Stopped, denied_line,
                          failure_line)

EXIT_OK, EXIT_DIFFERENT, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Move live DynamoDB tables and S3 buckets to a new home without stopping the service, and prove nothing "
         "was lost.",
)
verify_app = typer.Typer(no_args_is_help=True, help="Check that a target is an exact copy of its source.")
sync_app = typer.Typer(no_args_is_help=True, help="Keep a migrated target in step with its source (live sync).")
status_app = typer.Typer(cls=status.StatusGroup, help="What migrations have done and how their live sync is.")
iam_app = typer.Typer(no_args_is_help=True, help="The least IAM policy a migration needs, as JSON.")
finish_app = typer.Typer(no_args_is_help=True, help="End a migration's live sync, removing what Ferry added.")
app.add_typer(verify_app, name="verify")
app.add_typer(sync_app, name="sync")
app.add_typer(status_app, name="status")
app.add_typer(iam_app, name="iam-policy")
app.add_typer(finish_app, name="finish")
iam_app.command("table")(iam.table)
iam_app.command("bucket")(iam.bucket)
iam_app.command("plan")(iam.plan)

app.command("table")(table.migrate)
verify_app.command("table")(table.verify)
sync_app.command("table")(table.sync)
status_app.command("table")(status.table)

app.command("run")(plan.run)
sync_app.command("plan")(plan.sync)
app.command("cutover")(plan.cutover)
app.command("rollback")(plan.rollback)
status_app.command("plan")(plan.status)
app.command("deploy")(plan.deploy)

app.command("bucket")(bucket.migrate)
verify_app.command("bucket")(bucket.verify)
sync_app.command("bucket")(bucket.sync)
finish_app.command("bucket")(bucket.finish)
status_app.command("bucket")(status.bucket)


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
    except (BadInput, NoRegionError, NoCredentialsError) as error:
        fail(f"error: {error}")
        code = EXIT_BAD_INPUT
    except Stopped:  # the line is written below
        code = EXIT_INTERRUPTED
    except DifferencesRemain as error:
        fail(f"different: {error}")
        code = EXIT_DIFFERENT
    except NotApproved as error:
        fail(f"not approved: {error}")
        code = EXIT_DIFFERENT
    except CannotContinue as error:
        fail(f"failed: {error}")
        code = EXIT_FAILED
    except EndpointConnectionError as error:  # after botocore's retries: misconfigured, or the network is down
        where = error.kwargs.get("endpoint_url", "the AWS endpoint")
        if flows_started():
            fail(f"failed: cannot reach {where}: check --endpoint-url or AWS_ENDPOINT_URL, the region and the "
                 "network, then rerun the same command (it resumes)")
            code = EXIT_FAILED
        else:  # met by the checks, before anything was written
            fail(f"error: cannot reach {where}: check --endpoint-url or AWS_ENDPOINT_URL, the region and the network")
            code = EXIT_BAD_INPUT
    except ClientError as error:
        denied = denied_line(error)
        if denied and not flows_started():  # met by the checks: nothing was written
            fail(f"error: {denied}")
            code = EXIT_BAD_INPUT
        elif denied:  # a step of the run was refused: granting it, then rerunning, resumes
            step = getattr(error, "ferry_step", None)
            fail(f"failed: {step + ': ' if step else ''}{denied}")
            code = EXIT_FAILED
        else:
            fail(f"failed: {failure_line(error)}; rerun the same command to resume")
            code = EXIT_FAILED
    except (KeyboardInterrupt, typer.Abort) + termination_signals():
        code = EXIT_INTERRUPTED
    except Exception as error:  # a runtime failure that survived Prefect's retries: exit 3 is the contract
        fail(f"failed: {failure_line(error)}; rerun the same command to resume")
        code = EXIT_FAILED
    if code == EXIT_INTERRUPTED:  # also Typer's answer to Ctrl-C (it catches KeyboardInterrupt itself)
        fail("interrupted: each step stopped after the page or batch in hand; rerun the same command to resume")
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def termination_signals() -> tuple:
    """Prefect's exception for SIGTERM in a flow run, where Prefect is loaded (it is, once a flow ran)."""
    signals = sys.modules.get("prefect.exceptions")
    return (signals.TerminationSignal,) if signals else ()
