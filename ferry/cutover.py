"""A plan's cutover and rollback, as recorded steps: a kill anywhere, a rerun, the same end state.

The switch is a set of SSM parameters (the names the service reads its resources from). Each is
written at most once per cutover: before writing, its previous value is recorded in the state table;
a rerun that finds the parameter already holding the new value (killed between the write and its
record) records it as written instead of writing again. Rollback writes the recorded previous value
back the same way (or deletes a parameter that did not exist before).

The records live in the state table on the plan's target side, partition `plan:NAME`:

    part = "cutover"      direction ("forward"|"reverse"), the last step done, the gates' results
    part = "param#EPOCH#NAME"  type, old (absent: the parameter did not exist), new, written, restored

and one `hold` record in the partition of a migration whose live sync must not run now (the
forward one after the switch, the reverse one before it): `ferry sync table` refuses it by name.

Order, and why it loses nothing (forward = old home -> new, reverse = new -> old):
  cutover:  gates -> approval -> capture the new home's changes (stream, bucket events) -> switch
            -> drain forward to its end -> stop forward -> reverse catches up, and runs from then on
  rollback: capture the old home's bucket events again -> restore the parameters -> drain reverse to
            its end -> stop reverse -> forward resumes from its checkpoint (its stream holds what
            reverse sync wrote, in order: replaying it ends where the old home is)
Changes are captured before the switch sends the service to the other side, and each direction is
drained to its end before the other one applies: the two never write at the same time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ferry.dynamo.stream import STREAM_VIEW
from ferry.errors import BadInput, CannotContinue
from ferry.state import StateStore

FORWARD, REVERSE = "forward", "reverse"

# The steps of a cutover, in order; a rerun continues after the last one recorded.
GATES_PASSED, APPROVED, REVERSE_PREPARED, SWITCHED, FORWARD_STOPPED, REVERSE_STARTED = (
    "gates-passed", "approved", "reverse-prepared", "switched", "forward-stopped", "reverse-started")
CUTOVER_STEPS = [GATES_PASSED, APPROVED, REVERSE_PREPARED, SWITCHED, FORWARD_STOPPED, REVERSE_STARTED]
# ... and of a rollback
FORWARD_CAPTURED, RESTORED, REVERSE_STOPPED, FORWARD_RESUMED = (
    "forward-captured", "restored", "reverse-stopped", "forward-resumed")
ROLLBACK_STEPS = [FORWARD_CAPTURED, RESTORED, REVERSE_STOPPED, FORWARD_RESUMED]


@dataclass
class Progress:
    """Where a plan's cutover (or rollback) is: its direction now and the steps done.

    `epoch` numbers the cutovers of a plan (its parameter records are the epoch's own, so a later
    cutover never mistakes an earlier one's for its own); `version` is the record's, so that two
    runs of one plan cannot both go on (the slower one's next record fails: CannotContinue).
    What the rollback must undo is recorded at the approval: the parameters and whether reverse
    sync runs, whatever the plan file says later."""

    direction: str = FORWARD
    steps: list[str] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)
    epoch: int = 0
    version: int = 0
    parameters: list[list[str]] = field(default_factory=list)  # [name, value] as approved
    reverse_sync: bool = False
    switching_at: float | None = None  # epoch seconds, just before the first parameter was written
    restoring_at: float | None = None  # ... and just before the rollback's first restore

    def done(self, step: str) -> bool:
        return step in self.steps

    @property
    def rolling_back(self) -> bool:
        return any(step in self.steps for step in ROLLBACK_STEPS)


def read(state: StateStore, plan_id: str) -> Progress:
    record = state.get_record(plan_id, "cutover")
    if record is None:
        return Progress()
    return Progress(direction=record.get("direction", FORWARD), steps=json.loads(record.get("steps", "[]")),
                    gates=json.loads(record.get("gates", "[]")), epoch=int(record.get("epoch", 0)),
                    version=int(record.get("version", 0)), parameters=json.loads(record.get("parameters", "[]")),
                    reverse_sync=record.get("reverse_sync") == "yes",
                    switching_at=float(record["switching_at"]) if record.get("switching_at") else None,
                    restoring_at=float(record["restoring_at"]) if record.get("restoring_at") else None)


def record(state: StateStore, plan_id: str, progress: Progress, step: str | None = None) -> Progress:
    """Add `step` to the steps done (once) and save the whole record in one put, over the version
    this run read: CannotContinue if another run of the plan recorded something meanwhile."""
    if step and step not in progress.steps:
        progress.steps.append(step)
    fields = {"direction": progress.direction, "steps": json.dumps(progress.steps), "gates": json.dumps(progress.gates),
              "epoch": str(progress.epoch), "parameters": json.dumps(progress.parameters),
              "reverse_sync": "yes" if progress.reverse_sync else "",
              "switching_at": f"{progress.switching_at:.3f}" if progress.switching_at else None,
              "restoring_at": f"{progress.restoring_at:.3f}" if progress.restoring_at else None}
    if not state.put_record(plan_id, "cutover", fields, version=progress.version):
        raise CannotContinue(f"another cutover or rollback of {plan_id.removeprefix('plan:')!r} recorded a step "
                             "meanwhile: let it finish, then rerun (it goes on from what was recorded)")
    progress.version += 1
    return progress


# --- what a cutover needs ------------------------------------------------------------------------

def check_ready(plan, dynamodb_for) -> None:
    """Read-only, before a cutover writes anything (BadInput otherwise): every resource synced by the
    poller (the switch window's rule runs in the poller; the Lambdas' mappings are not switched yet),
    and every table's stream, and the new table's if it has one, carrying old images (the rule
    compares each change's old image with the new home's item). `dynamodb_for(side)`: a client."""
    for kind, entries in (("table", plan.tables), ("bucket", plan.buckets)):
        for entry in entries:
            if entry.live_sync != "poller":
                raise BadInput(f"{kind} {entry.source} -> {entry.target} is live-synced by a Lambda: a cutover "
                               "switches poller-synced resources only; set live_sync: poller for it and rerun "
                               "'ferry run PLAN' (it resumes), then cut over")
    for job in plan.table_jobs():
        for side, name in ((job.source_aws, job.source), (job.target_aws, job.target)):
            spec = dynamodb_for(side).describe_table(TableName=name)["Table"].get("StreamSpecification") or {}
            if spec.get("StreamEnabled") and spec.get("StreamViewType") != STREAM_VIEW:
                raise BadInput(f"the stream of {name!r} is {spec.get('StreamViewType')}: a cutover needs "
                               f"{STREAM_VIEW} (each change's old image), so disable and re-enable it with that view")


# --- parameters ---------------------------------------------------------------------------------

def current_value(ssm, name: str) -> tuple[str | None, str]:
    """(value, type) of a parameter now; (None, "String") when it does not exist."""
    try:
        parameter = ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ParameterNotFound":
            return None, "String"
        raise
    return parameter["Value"], parameter["Type"]


def check_parameters(ssm, names: list[str]) -> None:
    """Before any is written: each parameter is a String (or absent). A SecureString would have its
    value kept in the state table in the clear, and its key forgotten: Ferry does not switch those."""
    for name in names:
        _, kind = current_value(ssm, name)
        if kind != "String":
            raise BadInput(f"SSM parameter {name!r} is a {kind}: Ferry switches String parameters only "
                           "(they name resources; keep secrets elsewhere)")


def _part(epoch: int, name: str) -> str:
    return f"param#{epoch}#{name}"


def switch_parameter(ssm, state: StateStore, plan_id: str, epoch: int, name: str, new: str) -> dict:
    """Write `new` to parameter `name`, at most once per cutover: {"old", "new"} (old None: it did
    not exist)."""
    recorded = state.get_record(plan_id, _part(epoch, name))
    if recorded and recorded.get("written"):
        return {"old": recorded.get("old"), "new": recorded["new"]}
    value, kind = current_value(ssm, name)
    if recorded is None:  # before the write: what to restore
        recorded = {"type": kind, "old": value, "new": new}
        state.put_record(plan_id, _part(epoch, name), recorded)
    if value != new:  # else written already, by a run killed before it could record so
        ssm.put_parameter(Name=name, Value=new, Type=recorded.get("type", "String"), Overwrite=True)
    state.put_record(plan_id, _part(epoch, name), {**recorded, "written": "yes"})
    return {"old": recorded.get("old"), "new": new}


def switched_parameters(state: StateStore, plan_id: str, epoch: int, names: list[str]) -> dict[str, dict]:
    """What the switch recorded, read only."""
    found = {name: state.get_record(plan_id, _part(epoch, name)) for name in names}
    return {name: {"old": r.get("old"), "new": r["new"]} for name, r in found.items() if r and r.get("written")}


def restore_parameter(ssm, state: StateStore, plan_id: str, epoch: int, name: str) -> tuple[bool, str | None]:
    """Put back the value recorded before the switch (delete a parameter that did not exist), at most
    once. Returns (whether the switch had recorded it, the value restored)."""
    recorded = state.get_record(plan_id, _part(epoch, name))
    if recorded is None:
        return False, None
    old = recorded.get("old")
    if not recorded.get("restored"):
        value, _ = current_value(ssm, name)
        if value != old:
            if old is None:
                ssm.delete_parameter(Name=name)
            else:
                ssm.put_parameter(Name=name, Value=old, Type=recorded.get("type", "String"), Overwrite=True)
        state.put_record(plan_id, _part(epoch, name), {**recorded, "restored": "yes"})
    return True, old


# --- holds: which direction's live sync may run -------------------------------------------------

def hold(state: StateStore, migration_id: str, plan_name: str, why: str) -> None:
    state.put_record(migration_id, "hold", {"plan": plan_name, "why": why})


def release(state: StateStore, migration_id: str) -> None:
    state.delete_record(migration_id, "hold")


def check_not_held(state: StateStore, migration_id: str, source: str, target: str) -> None:
    """A live sync of a direction the plan has stopped would write the other way from the service."""
    held = state.get_record(migration_id, "hold")
    if held:
        raise BadInput(f"live sync of {source} into {target} is stopped by plan {held['plan']!r} ({held['why']}): "
                       f"run 'ferry sync plan PLAN' for the direction that runs now")
