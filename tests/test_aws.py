"""Sessions: assumed-role credentials are fetched lazily and refreshed when they expire."""

from __future__ import annotations

import datetime
import json

import boto3
import botocore.credentials
import pytest

from ferry.aws import client, session_for
from ferry.config import AwsSide
from ferry.errors import FerryError


def test_assumed_role_credentials_refresh_during_a_long_run(aws, monkeypatch):
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="ferry-target", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))["Role"]
    session = session_for(AwsSide(role_arn=role["Arn"], region="eu-west-1", endpoint_url=aws))

    credentials = session.get_credentials()
    first = credentials.get_frozen_credentials()
    assert first.access_key != "testing" and first.token  # really assumed, not the base keys
    # Two hours later: the role session has expired for the credentials and for the fetcher's cache.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
    credentials._expiry_time = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    second = credentials.get_frozen_credentials()
    assert second.access_key != first.access_key  # refreshed by a new AssumeRole
    dynamodb = client(AwsSide(role_arn=role["Arn"], region="eu-west-1", endpoint_url=aws), "dynamodb", session)
    assert dynamodb.meta.region_name == "eu-west-1"
    assert dynamodb.list_tables()["TableNames"] == []


def test_clients_use_standard_retries_and_the_sides_region(aws):
    dynamodb = client(AwsSide(region="ap-southeast-2"), "dynamodb")
    assert dynamodb.meta.region_name == "ap-southeast-2"
    assert dynamodb.meta.config.retries == {"mode": "standard", "total_max_attempts": 11}


def test_no_region_anywhere_is_a_clear_user_error(aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(FerryError, match="no AWS region"):
        client(AwsSide(), "dynamodb")


def test_an_unreachable_endpoint_met_by_the_checks_is_one_line_naming_it_and_exit_2(run_ferry):
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens
    result = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--endpoint-url", unreachable,
                       env={"AWS_MAX_ATTEMPTS": "2"})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ferry: error: cannot reach {unreachable}") and "--endpoint-url" in line
