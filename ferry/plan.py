"""A plan: the tables and buckets of one service, moved together under one cutover.

A plan file is YAML (see examples/plan.yaml). It is validated whole before anything runs: every
problem is one line naming the file, the line and the field (`plan.yaml:7: tables[1].target: ...`),
raised as BadInput (exit 2). Each table and bucket entry takes the options of `ferry table` and
`ferry bucket`, validated by the same job models those commands use, so a plan and a command line
accept exactly the same values.

A Plan is also what the plan flows take as their parameter: names and settings only, never data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ferry.config import DEFAULT_STATE_TABLE, AwsSide, BucketJob, EventsMode, LiveSyncMode, RestoreTier, TableJob
from ferry.errors import BadInput

Kind = Literal["table", "bucket"]


class Strict(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class PlanSide(Strict):
    """Where one side lives (as AwsSide; unset means the standard AWS environment)."""

    profile: str | None = None
    role_arn: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def aws(self) -> AwsSide:
        return AwsSide(**self.model_dump())


class PlanTable(Strict):
    """One table of the plan, with any `ferry table` option."""

    source: str
    target: str
    create_target: bool = False
    allow_nonempty: bool = False
    segments: int | None = None
    page_size: int | None = None
    verify: bool = True
    live_sync: LiveSyncMode = "poller"
    max_read_units: float | None = None
    max_write_units: float | None = None
    read_capacity_percent: float | None = None
    write_capacity_percent: float | None = None

    @model_validator(mode="after")
    def _as_a_command_would(self) -> "PlanTable":
        _same_rules(TableJob, self.model_dump())
        return self


class PlanBucket(Strict):
    """One bucket of the plan, with any `ferry bucket` option."""

    source: str
    target: str
    prefix: str = ""
    delete: bool = False
    multipart_threshold: int | None = None
    part_size: int | None = None
    live_sync: LiveSyncMode = "poller"
    events: EventsMode = "auto"
    target_kms_key: str | None = None  # forward only: the reverse sync copies back as the old home is
    restore_days: int | None = None
    restore_tier: RestoreTier | None = None
    all_versions: bool = False

    @model_validator(mode="after")
    def _as_a_command_would(self) -> "PlanBucket":
        _same_rules(BucketJob, {k: v for k, v in self.model_dump().items() if v is not None})
        return self


def _same_rules(kind: type[BaseModel], fields: dict) -> None:
    """Validate an entry with the job model its command uses: one rule for a value, wherever it comes from."""
    try:
        kind(**fields)
    except ValidationError as error:
        raise ValueError(str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None


class Parameter(Strict):
    """An SSM parameter the service reads a resource name from, and its value after the switch
    (checked by SSM's own rules here, so that no switch stops half-way on a name SSM refuses)."""

    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]{1,1011}", name):
            raise ValueError(f"{name!r} is not an SSM parameter name: use up to 1011 letters, digits and _ . - /")
        if "/" in name and not name.startswith("/"):
            raise ValueError(f"{name!r}: a parameter name with '/' must start with '/' (a full path)")
        if re.match(r"/?(aws|ssm)", name, re.IGNORECASE):
            raise ValueError(f"{name!r}: names starting with 'aws' or 'ssm' are reserved by SSM")
        if name.count("/") > 15:
            raise ValueError(f"{name!r}: SSM allows at most 15 levels")
        return name

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        if not 1 <= len(value.encode()) <= 4096:
            raise ValueError("an SSM parameter value is 1 to 4096 bytes")
        return value


class Cutover(Strict):
    parameters: list[Parameter] = Field(default_factory=list)
    max_lag_seconds: float = 5.0
    reverse_sync: bool = True
    approval_timeout_seconds: int = 24 * 3600  # how long a cutover run waits for a person in the UI

    @field_validator("max_lag_seconds", "approval_timeout_seconds")
    @classmethod
    def _positive(cls, seconds: float) -> float:
        if seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, got {seconds:g}")
        return seconds


class Schedules(Strict):
    """Cron schedules for `ferry deploy`: a periodic re-sync and a periodic re-verification."""

    resync: str | None = None
    verify: str | None = None

    @field_validator("resync", "verify")
    @classmethod
    def _cron(cls, cron: str | None) -> str | None:
        if cron is not None and not valid_cron(cron):
            raise ValueError(f"{cron!r} is not a cron expression of 5 fields (minute hour day month weekday, "
                             "e.g. '*/10 * * * *')")
        return cron


CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
CRON_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}


def valid_cron(cron: str) -> bool:
    """Five fields of `*`, numbers, ranges, steps and lists, each number within its field's range."""
    fields = cron.split()
    if len(fields) != 5:
        return False
    for n, (text, (low, high)) in enumerate(zip(fields, CRON_RANGES)):
        for part in text.lower().split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                return False
            if base == "*":
                continue
            ends = base.split("-")
            if len(ends) > 2:
                return False
            for end in ends:
                number = CRON_NAMES.get(n, []).index(end) + (n == 3) if end in CRON_NAMES.get(n, []) else \
                    int(end) if end.isdigit() else None
                if number is None or not low <= number <= high:
                    return False
    return True


class Plan(Strict):
    name: str
    source: PlanSide = Field(default_factory=PlanSide)
    target: PlanSide = Field(default_factory=PlanSide)
    state_table: str = DEFAULT_STATE_TABLE
    parallel: int = 4  # resources migrated at once
    tables: list[PlanTable] = Field(default_factory=list)
    buckets: list[PlanBucket] = Field(default_factory=list)
    cutover: Cutover = Field(default_factory=Cutover)
    schedules: Schedules = Field(default_factory=Schedules)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise ValueError(f"{name!r} is not a plan name: use up to 63 lowercase letters, digits and '-'")
        return name

    @field_validator("parallel")
    @classmethod
    def _parallel(cls, n: int) -> int:
        if not 1 <= n <= 64:
            raise ValueError(f"must be between 1 and 64, got {n}")
        return n

    @field_validator("state_table")
    @classmethod
    def _state_table(cls, name: str) -> str:
        _same_rules(TableJob, {"source": "xxx", "target": "yyy", "state_table": name})
        return name

    # --- the jobs ---------------------------------------------------------------------------
    def table_job(self, entry: PlanTable, reverse: bool = False) -> TableJob:
        """The entry's migration; `reverse`: the same pair the other way (new home -> old), live sync only."""
        fields = entry.model_dump()
        sides = (self.source.aws(), self.target.aws())
        if reverse:
            fields = {"source": entry.target, "target": entry.source}
            sides = sides[::-1]
        return TableJob(**fields, source_aws=sides[0], target_aws=sides[1], state_table=self.state_table)

    def bucket_job(self, entry: PlanBucket, reverse: bool = False) -> BucketJob:
        fields = {k: v for k, v in entry.model_dump().items() if v is not None}
        sides = (self.source.aws(), self.target.aws())
        if reverse:
            fields = {"source": entry.target, "target": entry.source, "prefix": entry.prefix}
            sides = sides[::-1]
        return BucketJob(**fields, source_aws=sides[0], target_aws=sides[1])

    def table_jobs(self, reverse: bool = False) -> list[TableJob]:
        return [self.table_job(t, reverse) for t in self.tables]

    def bucket_jobs(self, reverse: bool = False) -> list[BucketJob]:
        return [self.bucket_job(b, reverse) for b in self.buckets]

    @property
    def state_id(self) -> str:
        """The plan's partition in the state table (its cutover's steps and parameters)."""
        return f"plan:{self.name}"


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; any problem is one BadInput line: `FILE:LINE: FIELD: problem`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BadInput(f"cannot read plan file {str(path)!r}: {error.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise BadInput(f"{path}:{line}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}:1: a plan is a mapping with at least 'name' and 'tables' or 'buckets'")
    try:
        plan = Plan(**data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [p for p in first["loc"] if p not in ("function-after",)]
        if first["type"] == "extra_forbidden":
            message = f"unknown field (check its spelling against examples/plan.yaml)"
        elif first["type"] == "missing":
            message = "missing: every entry needs it"
        else:
            message = str(first["msg"]).removeprefix("Value error, ")
        raise BadInput(f"{path}:{_line(root, loc)}: {_field(loc)}: {message}") from None
    _check_pairs(plan, path, root)
    if not plan.tables and not plan.buckets:
        raise BadInput(f"{path}:1: the plan has no tables and no buckets: list at least one")
    return plan


def _check_pairs(plan: Plan, path: Path, root) -> None:
    """No target twice, and no target that is also a source (it would be copied while it is written)."""
    for kind, entries in (("tables", plan.tables), ("buckets", plan.buckets)):
        sources = {e.source for e in entries}
        seen: set[str] = set()
        seen_sources: set[str] = set()
        for n, entry in enumerate(entries):
            if entry.source in seen_sources:
                raise BadInput(f"{path}:{_line(root, [kind, n, 'source'])}: {kind}[{n}].source: {entry.source!r} is "
                               "the source of an earlier entry: migrate it once (to one target) per plan")
            seen_sources.add(entry.source)
            if kind == "tables" and plan.state_table in (entry.source, entry.target):
                raise BadInput(f"{path}:{_line(root, [kind, n])}: {kind}[{n}]: {plan.state_table!r} is the plan's "
                               "state_table: choose another state_table")
            where = f"{path}:{_line(root, [kind, n, 'target'])}: {kind}[{n}].target"
            if entry.target in seen:
                raise BadInput(f"{where}: {entry.target!r} is the target of an earlier entry: give each its own")
            if entry.target in sources:
                raise BadInput(f"{where}: {entry.target!r} is also a source of this plan: a target must be new")
            seen.add(entry.target)
    names = [p.name for p in plan.cutover.parameters]
    for n, name in enumerate(names):
        if name in names[:n]:
            raise BadInput(f"{path}:{_line(root, ['cutover', 'parameters', n, 'name'])}: "
                           f"cutover.parameters[{n}].name: {name!r} is listed twice")


def _field(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line(node, loc: list[Any]) -> int:
    """The line of the deepest node of `loc` that exists in the YAML (a missing field: its entry's)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, child = key.start_mark.line + 1, value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
