"""What every Ferry task shares: the retry policy, and building clients and state from a job."""

from __future__ import annotations

import math
import os

from botocore.exceptions import ClientError
from prefect.cache_policies import NO_CACHE

from ferry.aws import TableClients
from ferry.aws import table_clients as shared_table_clients
from ferry.config import TableJob
from ferry.errors import BadInput, FerryError, denied_line
from ferry.state import StateStore

RETRIES = 3
DEFAULT_RETRY_DELAYS = "2,10,30"


def retry_delays() -> list[float]:
    """Seconds between a task's attempts: FERRY_RETRY_DELAYS (comma-separated), else 2, 10 and 30."""
    text = os.environ.get("FERRY_RETRY_DELAYS", DEFAULT_RETRY_DELAYS)
    try:
        delays = [float(part) for part in text.split(",")]
    except ValueError:
        delays = []
    if len(delays) != RETRIES or not all(math.isfinite(d) and d >= 0 for d in delays):
        raise BadInput(f"FERRY_RETRY_DELAYS must be {RETRIES} comma-separated seconds, zero or more "
                       f"(like {DEFAULT_RETRY_DELAYS}), got {text!r}")
    return delays


def name_the_step(task, task_run, state) -> None:
    """After a task's last attempt: mark its error with the step (the task run's name, which names
    the resource), so the CLI's one line says where the run stopped."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException) and not getattr(error, "ferry_step", None):
        error.ferry_step = task_run.name


def retryable(error: BaseException) -> bool:
    """Runtime failures (throttling, timeouts, a lost connection) are worth retrying; BadInput,
    CannotContinue and a denied permission are not: none gets better by waiting."""
    if isinstance(error, FerryError) or not isinstance(error, Exception):
        return False
    return not (isinstance(error, ClientError) and denied_line(error))


def retry_unless_user_error(task, task_run, state) -> bool:
    """Prefect's retry condition: retry only what is `retryable`."""
    try:
        state.result()
    except BaseException as error:
        return retryable(error)
    return True


def will_be_retried(error: BaseException) -> bool:
    """Inside a task with RETRYING: whether Prefect will run it again after `error` (a watcher of
    the task, such as the catch-up gate, must not give up on a failure that is about to be retried)."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None or not retryable(error):
        return False
    return context.task_run.run_count <= context.task.retries


# Every task: retried on runtime failures (not on the user's mistakes), and never cached by Prefect:
# resuming is the state table's job, and tasks have side effects.
RETRYING = dict(retries=RETRIES, retry_delay_seconds=retry_delays(), retry_condition_fn=retry_unless_user_error,
                cache_policy=NO_CACHE, on_failure=[name_the_step])


def table_clients(job: TableJob) -> TableClients:
    return shared_table_clients(job.source_aws, job.target_aws)


def state_store(job: TableJob, clients: TableClients) -> StateStore:
    """The state table lives on the target side: the side that outlives the migration."""
    return StateStore(clients.target, job.state_table)
