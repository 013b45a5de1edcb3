"""The one place boto3 sessions and clients are built.

Each side of a migration gets its own session: a profile and region, optionally an assumed role
whose credentials refresh themselves before they expire (a backfill can outlive a one-hour role
session), and an optional endpoint (moto, LocalStack, a VPC endpoint).

Clients retry with botocore's standard mode: exponential backoff with jitter, up to 10 retries, for
throttles, 5xx answers and lost connections. Not adaptive mode: its client-side limiter cuts its rate
on every throttle and is shared by every thread using the client, so a steady share of throttled
requests (a hot partition) sinks a whole run to about a request a second (measured under
tests/aws_proxy.py's faults: 76 s against 14 s for the same `ferry table`). What production can
spare is Ferry's own limit (ferry/dynamo/capacity.py), not the SDK's guess.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, CredentialProvider, DeferredRefreshableCredentials

from ferry.config import AwsSide
from ferry.errors import BadInput


def retry_policy() -> dict:
    """botocore's standard mode: 10 retries, or AWS_MAX_ATTEMPTS attempts in all where it is set (a
    `retries` setting in code hides the variable from botocore, so it is read here)."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
    if attempts.isdigit() and int(attempts) >= 1:
        return {"mode": "standard", "total_max_attempts": int(attempts)}
    return {"mode": "standard", "max_attempts": 10}


CLIENT_CONFIG = Config(
    retries=retry_policy(),
    max_pool_connections=128,
    connect_timeout=10,
    read_timeout=60,
)


class AssumedRole(CredentialProvider):
    """A credential provider that assumes a role, lazily, refreshing before each expiry."""

    METHOD = "assume-role"
    CANONICAL_NAME = "ferry-assume-role"

    def __init__(self, fetcher: AssumeRoleCredentialFetcher):
        super().__init__()
        self.fetcher = fetcher

    def load(self):
        return DeferredRefreshableCredentials(method=self.METHOD, refresh_using=self.fetcher.fetch_credentials)


def session_for(side: AwsSide) -> boto3.Session:
    """A boto3 session for one side; with a role ARN, credentials are assumed lazily and refreshed."""
    core = botocore.session.Session(profile=side.profile)
    if side.role_arn:
        base = botocore.session.Session(profile=side.profile)  # the credentials that assume the role
        source_credentials = base.get_credentials()
        if source_credentials is None:
            raise BadInput(
                f"cannot assume {side.role_arn}: no base AWS credentials found "
                "(set AWS_PROFILE, --source-profile/--target-profile, or access keys)"
            )

        def create_sts_client(service_name, **kwargs):
            kwargs.setdefault("endpoint_url", side.endpoint_url)
            return base.create_client(service_name, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=create_sts_client,
            source_credentials=source_credentials,
            role_arn=side.role_arn,
            extra_args={"RoleSessionName": "ferry"},
        )
        core.get_component("credential_provider").insert_before("env", AssumedRole(fetcher))
    return boto3.Session(botocore_session=core, region_name=side.region)


def client(side: AwsSide, service: str, session: boto3.Session | None = None):
    """A client for `service` on one side, with Ferry's retry policy and the side's endpoint."""
    session = session or session_for(side)
    if not session.region_name:
        raise BadInput(
            "no AWS region configured: set AWS_DEFAULT_REGION, a region in your profile, "
            "or pass --source-region/--target-region"
        )
    return session.client(service, endpoint_url=side.endpoint_url, config=CLIENT_CONFIG)


def check_sides(source: AwsSide | None, target: AwsSide | None) -> None:
    """Fail fast, before any write, when a side has no region or no credentials: one BadInput line
    naming the side and the options that fix it (None: that side is not used)."""
    for side, name in ((source, "source"), (target, "target")):
        if side is not None:
            check_side(side, name)


def check_side(side: AwsSide, name: str) -> None:
    session = session_for(side)
    if not session.region_name:
        raise BadInput(f"no AWS region configured for the {name} side: set AWS_DEFAULT_REGION, a region in "
                       f"your profile, or pass --{name}-region")
    if not known_region(session, session.region_name):
        raise BadInput(f"unknown AWS region {session.region_name!r} for the {name} side: check --{name}-region, "
                       "AWS_DEFAULT_REGION or your profile (a region newer than this botocore needs an upgrade)")
    if session.get_credentials() is None:
        raise BadInput(f"no AWS credentials for the {name} side: set AWS_PROFILE or access keys, "
                       f"or pass --{name}-profile / --{name}-role-arn")


def known_region(session: boto3.Session, region: str) -> bool:
    """Whether botocore knows `region` for DynamoDB or S3 in any partition (aws, aws-cn, aws-us-gov...)."""
    return any(region in session.get_available_regions(service, partition)
               for partition in session.get_available_partitions() for service in ("dynamodb", "s3"))


class TableClients:
    """The clients one table migration needs: source DynamoDB and Streams, target DynamoDB."""

    def __init__(self, source_side: AwsSide, target_side: AwsSide):
        source_session = session_for(source_side)
        target_session = session_for(target_side) if target_side != source_side else source_session
        self.source = client(source_side, "dynamodb", source_session)
        self.source_streams = client(source_side, "dynamodbstreams", source_session)
        self.target = client(target_side, "dynamodb", target_session)


@lru_cache(maxsize=32)
def table_clients(source_side: AwsSide, target_side: AwsSide) -> TableClients:
    """TableClients shared by every task in this process: building them costs ~100 ms, and boto3
    clients are thread-safe. Assumed-role credentials inside them refresh on their own."""
    return TableClients(source_side, target_side)


_client_lock = threading.Lock()


@lru_cache(maxsize=64)
def shared_client(side: AwsSide, service: str):
    """One client per side and service for the whole process (thread-safe once built)."""
    with _client_lock:
        return client(side, service)
