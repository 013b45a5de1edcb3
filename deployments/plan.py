"""`ferry deploy PLAN`: the plan's flows as Prefect deployments, with the plan's schedules.

Five deployments per plan, named after it (`migrate-plan/orders-service`, `sync-plan/...`,
`verify-plan/...`, `cutover/...`, `rollback/...`), each with the plan as its parameter, so they run
from the UI with one click; the cutover run pauses there for its approval. They run on a process
work pool from this checkout (the worker's environment gives AWS credentials and endpoints).
`schedules.resync` runs sync-plan until idle (a periodic re-sync in the plan's current direction);
`schedules.verify` runs verify-plan.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule

from ferry.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
RESYNC_IDLE_SECONDS = 30.0

FLOWS = {  # flow name -> entrypoint, parameters besides the plan
    "migrate-plan": ("flows/migrate_plan.py:migrate_plan", {}),
    "sync-plan": ("flows/migrate_plan.py:sync_plan", {"idle_seconds": RESYNC_IDLE_SECONDS}),
    "verify-plan": ("flows/migrate_plan.py:verify_plan", {}),
    "cutover": ("flows/cutover.py:cutover", {"approval": "ui"}),
    "rollback": ("flows/cutover.py:rollback", {}),
}
SCHEDULED = {"sync-plan": "resync", "verify-plan": "verify"}


def ensure_pool(name: str) -> None:
    """A process work pool of that name (created once)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as prefect:
        try:
            prefect.read_work_pool(name)
        except ObjectNotFound:
            try:
                prefect.create_work_pool(WorkPoolCreate(name=name, type="process"))
            except ObjectAlreadyExists:
                pass


def deploy_plan(plan: Plan, pool: str) -> list[str]:
    """Create or update the plan's deployments; returns their names (FLOW/PLAN)."""
    ensure_pool(pool)
    names = []
    for flow_name, (entrypoint, extra) in FLOWS.items():
        cron = getattr(plan.schedules, SCHEDULED.get(flow_name, ""), None)
        loaded = Flow.from_source(source=str(ROOT), entrypoint=entrypoint)
        with contextlib.redirect_stdout(io.StringIO()):  # Prefect's own tables: the command prints its summary
            loaded.deploy(
                name=plan.name, work_pool_name=pool, parameters={"plan": plan.model_dump(mode="json"), **extra},
                schedules=[CronSchedule(cron=cron, timezone="UTC")] if cron else [],
                tags=["ferry", f"plan:{plan.name}"],
                description=f"{flow_name} of plan {plan.name} ({len(plan.tables)} tables, {len(plan.buckets)} buckets)",
                build=False, push=False, print_next_steps=False, ignore_warnings=True,
            )
        names.append(f"{flow_name}/{plan.name}")
    return names
