"""What every Ferry task shares: the retry policy, and building clients and state from a job."""

from __future__ import annotations

from ferry.aws import TableClients
from ferry.aws import table_clients as shared_table_clients
from ferry.config import TableJob
from ferry.errors import FerryError
from ferry.state import StateStore

from prefect.cache_policies import NO_CACHE

RETRIES = 3
RETRY_DELAYS = [2, 10, 30]


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry runtime failures (throttling, timeouts, a lost connection), never BadInput or
    CannotContinue: neither gets better by waiting."""
    try:
        state.result()
    except FerryError:
        return False
    except Exception:
        return True
    return True


def will_be_retried(error: BaseException) -> bool:
    """Inside a task with RETRYING: whether Prefect will run it again after `error` (a watcher of
    the task, such as the catch-up gate, must not give up on a failure that is about to be retried)."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None or isinstance(error, FerryError) or not isinstance(error, Exception):
        return False
    return context.task_run.run_count <= context.task.retries


# Every task: retried on runtime failures (not on the user's mistakes), and never cached by Prefect:
# resuming is the state table's job, and tasks have side effects.
RETRYING = dict(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_unless_user_error,
                cache_policy=NO_CACHE)


def table_clients(job: TableJob) -> TableClients:
    return shared_table_clients(job.source_aws, job.target_aws)


def state_store(job: TableJob, clients: TableClients) -> StateStore:
    """The state table lives on the target side: the side that outlives the migration."""
    return StateStore(clients.target, job.state_table)
