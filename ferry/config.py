"""Typed settings: how to reach one side of a migration, and what a table migration should do.

These are pydantic models so that Prefect can take them as flow parameters (from the CLI, the UI or a
deployment) and hash them for task run names and caching.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

import boto3
from botocore.exceptions import ProfileNotFound
from pydantic import BaseModel, Field, field_validator, model_validator

from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE

DEFAULT_STATE_TABLE = "ferry-state"
MAX_SEGMENTS = 1_000_000  # DynamoDB's own limit on TotalSegments
LiveSyncMode = Literal["poller", "lambda"]  # the local poller, or a deployed Lambda
EventsMode = Literal["auto", "notification", "eventbridge"]  # how a bucket's events reach its queue (ferry/s3/routes.py)
RestoreTier = Literal["Bulk", "Standard"]  # S3's retrieval tiers for archived objects (Expedited: not DEEP_ARCHIVE's)


class AwsSide(BaseModel):
    """Where one side lives. Anything left unset falls back to the standard AWS environment
    (AWS_PROFILE, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, keys, instance roles)."""

    profile: str | None = None
    role_arn: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    model_config = {"frozen": True}

    @property
    def resolved_region(self) -> str | None:
        """The region this side's clients use: the one given, else the profile's or the environment's."""
        return self.region or default_region(self.profile)


@lru_cache(maxsize=16)
def default_region(profile: str | None) -> str | None:
    """The region a side uses when none is given: the profile's, else AWS_DEFAULT_REGION."""
    try:
        return boto3.Session(profile_name=profile).region_name
    except ProfileNotFound:  # building the clients reports it, in one line
        return None


class TableJob(BaseModel):
    """One table migration: everything a task needs to rebuild its clients and find its state."""

    source: str
    target: str
    source_aws: AwsSide = Field(default_factory=AwsSide)
    target_aws: AwsSide = Field(default_factory=AwsSide)
    segments: int | None = None
    page_size: int | None = None
    create_target: bool = False
    allow_nonempty: bool = False
    restart: bool = False
    verify: bool = True
    live_sync: LiveSyncMode = "poller"
    state_table: str = DEFAULT_STATE_TABLE
    # What the backfill may take (live sync is never limited): capacity units per second, or a share
    # of a provisioned table's capacity. None: unlimited.
    max_read_units: float | None = None
    max_write_units: float | None = None
    read_capacity_percent: float | None = None
    write_capacity_percent: float | None = None

    model_config = {"frozen": True}

    @field_validator("max_read_units", "max_write_units")
    @classmethod
    def _units(cls, n: float | None, info) -> float | None:
        if n is not None and not n > 0:
            raise ValueError(f"--{info.field_name.replace('_', '-')} must be more than 0 capacity units per second, "
                             f"got {n:g}")
        return n

    @field_validator("read_capacity_percent", "write_capacity_percent")
    @classmethod
    def _percent(cls, n: float | None, info) -> float | None:
        if n is not None and not 0 < n <= 100:
            raise ValueError(f"--{info.field_name.replace('_', '-')} must be more than 0 and at most 100, got {n:g}")
        return n

    @model_validator(mode="after")
    def _one_limit_per_side(self) -> "TableJob":
        for side in ("read", "write"):
            if getattr(self, f"max_{side}_units") is not None and getattr(self, f"{side}_capacity_percent") is not None:
                raise ValueError(f"give --max-{side}-units or --{side}-capacity-percent, not both")
        return self

    @field_validator("source", "target", "state_table")
    @classmethod
    def _table_name(cls, name: str, info) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", name):
            what = "--state-table " if info.field_name == "state_table" else ""
            raise ValueError(
                f"{what}{name!r} is not a DynamoDB table name: use 3-255 letters, digits, '_', '-' or '.'"
            )
        return name

    @field_validator("segments")
    @classmethod
    def _segments(cls, n: int | None) -> int | None:
        if n is not None and not 1 <= n <= MAX_SEGMENTS:
            raise ValueError(f"--segments must be between 1 and {MAX_SEGMENTS}, got {n}")
        return n

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, n: int | None) -> int | None:
        if n is not None and n < 1:
            raise ValueError(f"--page-size must be at least 1, got {n}")
        return n

    @property
    def migration_id(self) -> str:
        """The key of this migration in the state table: the same command always finds the same state."""
        return f"table:{_located(self.source, self.source_aws)}>{_located(self.target, self.target_aws)}"


def _located(name: str, side: AwsSide) -> str:
    """`name` in its resolved region: `--source-region us-east-1` and no option at all (with
    us-east-1 the default) name the same table, whichever machine computes it."""
    return f"{side.resolved_region}/{name}"


class BucketJob(BaseModel):
    """One bucket migration: everything a task needs to rebuild its clients."""

    source: str
    target: str
    prefix: str = ""
    delete: bool = False
    source_aws: AwsSide = Field(default_factory=AwsSide)
    target_aws: AwsSide = Field(default_factory=AwsSide)
    multipart_threshold: int = MULTIPART_THRESHOLD
    part_size: int = PART_SIZE
    live_sync: LiveSyncMode = "poller"
    events: EventsMode = "auto"
    target_kms_key: str | None = None  # id, alias or ARN: every copy re-encrypted with it (preflight resolves it)
    restore_days: int | None = None  # archived objects restored for this many days, then copied
    restore_tier: RestoreTier | None = None  # with restore_days; None: Bulk
    all_versions: bool = False  # every version and delete marker of every key, in order (ferry/s3/versions.py)

    model_config = {"frozen": True}

    @field_validator("target_kms_key")
    @classmethod
    def _kms_key(cls, key: str | None) -> str | None:
        if key is not None and (not key.strip() or any(c.isspace() for c in key)):
            raise ValueError(f"--target-kms-key {key!r} is not a KMS key: give its id, alias/NAME or ARN")
        return key

    @field_validator("restore_days")
    @classmethod
    def _restore_days(cls, days: int | None) -> int | None:
        if days is not None and days < 1:
            raise ValueError(f"--restore must be at least 1 day (how long S3 keeps a restored copy), got {days}")
        return days

    @model_validator(mode="after")
    def _tier_with_days(self) -> "BucketJob":
        if self.restore_tier is not None and self.restore_days is None:
            raise ValueError("--restore-tier goes with --restore DAYS: add it, or drop --restore-tier")
        if self.restore_days is not None and self.all_versions:
            raise ValueError("--restore restores current versions only, not the histories --all-versions copies: "
                             "restore the archived versions first (aws s3api restore-object --version-id), "
                             "or drop one of the two")
        return self

    @property
    def tier(self) -> RestoreTier:
        return self.restore_tier or "Bulk"

    @field_validator("source", "target")
    @classmethod
    def _bucket_name(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name):
            raise ValueError(f"{name!r} is not an S3 bucket name: use 3-63 lowercase letters, digits, '.' or '-'")
        return name

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, n: int) -> int:
        if not 5 * 2**20 <= n <= 5 * 2**30:
            raise ValueError(f"--part-size must be between 5 MiB and 5 GiB (S3's limits), got {n}")
        return n

    @field_validator("multipart_threshold")
    @classmethod
    def _threshold(cls, n: int) -> int:
        if not 0 < n <= 5 * 2**30:
            raise ValueError(f"--multipart-threshold must be at most 5 GiB (CopyObject's limit), got {n}")
        return n
