"""Typed settings: how to reach one side of a migration, and what a table migration should do.

These are pydantic models so that Prefect can take them as flow parameters (from the CLI, the UI or a
deployment) and hash them for task run names and caching.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

DEFAULT_STATE_TABLE = "ferry-state"
MAX_SEGMENTS = 1_000_000  # DynamoDB's own limit on TotalSegments


class AwsSide(BaseModel):
    """Where one side lives. Anything left unset falls back to the standard AWS environment
    (AWS_PROFILE, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, keys, instance roles)."""

    profile: str | None = None
    role_arn: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    model_config = {"frozen": True}


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
    live_sync: Literal["poller", "lambda"] = "poller"
    state_table: str = DEFAULT_STATE_TABLE

    model_config = {"frozen": True}

    @field_validator("source", "target")
    @classmethod
    def _table_name(cls, name: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", name):
            raise ValueError(
                f"{name!r} is not a DynamoDB table name: use 3-255 letters, digits, '_', '-' or '.'"
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
        src = f"{self.source_aws.region}/{self.source}" if self.source_aws.region else self.source
        tgt = f"{self.target_aws.region}/{self.target}" if self.target_aws.region else self.target
        return f"table:{src}>{tgt}"


class BucketJob(BaseModel):
    """One bucket migration."""

    source: str
    target: str
    prefix: str = ""
    delete: bool = False
    source_aws: AwsSide = Field(default_factory=AwsSide)
    target_aws: AwsSide = Field(default_factory=AwsSide)
    multipart_threshold: int = 256 * 2**20
    part_size: int = 128 * 2**20

    model_config = {"frozen": True}

    @field_validator("source", "target")
    @classmethod
    def _bucket_name(cls, name: str) -> str:
        import re

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
