"""Least privilege: a whole `ferry table` on moto's server with IAM enforced, as a user holding exactly
the policy `ferry iam-policy table` prints; with an action of any one step taken away it stops with
a line naming the operation that was denied.

moto's server enforces IAM once started with INITIAL_NO_AUTH_ACTION_COUNT (the first requests are
free, to create an administrator). It checks actions but matches DynamoDB resources as "*", so the
policy's resources are widened to "*" here: what this proves is that the actions are complete and
that each step's are needed; the ARNs are checked by reading them in the printed policy.
"""

from __future__ import annotations

import json
import subprocess

import boto3
import pytest

from conftest import BIN, free_port, stop, wait_for
from tables import create_table, put_items, simple_items

# An action of each step: the checks (DescribeTable), enabling the stream (UpdateTable; first, before any
# run has turned the stream on), the state table (Query), creating the target (CreateTable), the
# backfill's scan (Scan), live sync (GetShardIterator), the backfill's writes (BatchWriteItem).
NEEDED_BY_EVERY_RUN = ["dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:Query", "dynamodb:CreateTable",
                       "dynamodb:Scan", "dynamodb:GetShardIterator", "dynamodb:BatchWriteItem"]
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture
def enforcing_moto():
    """A moto server of its own that enforces IAM; yields (endpoint, make_user(policy) -> credentials env)."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PATH": ""},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(f"{endpoint}/moto-api/", 30, server)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    users = []

    def make_user(policy: dict, client=None) -> dict:
        client = client or users[0][1]
        name = f"user{len(users)}"
        client.create_user(UserName=name)
        client.put_user_policy(UserName=name, PolicyName="ferry", PolicyDocument=json.dumps(policy))
        key = client.create_access_key(UserName=name)["AccessKey"]
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                       "AWS_ENDPOINT_URL": endpoint}
        users.append((credentials, boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                                                aws_access_key_id=key["AccessKeyId"],
                                                aws_secret_access_key=key["SecretAccessKey"])))
        return credentials

    admin = make_user(ADMIN, iam)  # the three free requests
    yield endpoint, admin, make_user
    stop(server)


def test_a_table_migration_succeeds_with_exactly_the_printed_policy_and_stops_without_any_steps_action(
        run_ferry, enforcing_moto):
    endpoint, admin, make_user = enforcing_moto
    as_admin = {"FERRY_RETRY_DELAYS": "0,0,0", "AWS_MAX_ATTEMPTS": "2", **admin}
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(50))
    printed = run_ferry("iam-policy", "table", "src", "dst", "--create-target", env=as_admin)
    assert printed.returncode == 0, printed.stderr
    policy = json.loads(printed.stdout)["operator"]
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ReadSource"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/src"]
    assert resources["ReadSourceStream"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/src/stream/*"]
    assert resources["WriteTarget"][0] == "arn:aws:dynamodb:us-east-1:123456789012:table/dst"
    assert resources["StateTable"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/ferry-state"]

    def widened(statements: list[dict], without: str | None = None) -> dict:  # moto matches resources as "*"
        kept = [{**s, "Action": [a for a in s["Action"] if a != without], "Resource": "*"} for s in statements]
        return {"Version": policy["Version"], "Statement": [s for s in kept if s["Action"]]}

    def start_afresh() -> None:  # what a refused run left: no target, no state table (the stream stays on once
        for table in set(dynamodb.list_tables()["TableNames"]) - {"src"}:  # on: UpdateTable is checked first)
            dynamodb.delete_table(TableName=table)

    for left_out in NEEDED_BY_EVERY_RUN:  # one per step; taken out of every statement that grants it
        start_afresh()
        refused = run_ferry("table", "src", "dst", "--create-target", "--json",
                            env={**as_admin, **make_user(widened(policy["Statement"], without=left_out))})
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode in (2, 3), (left_out, refused.stdout, refused.stderr)
        assert len(lines) == 1 and f"access denied to {left_out.split(':')[1]} " in lines[0], (left_out, lines)
        assert "Traceback" not in refused.stderr

    start_afresh()
    done = run_ferry("table", "src", "dst", "--create-target", "--json",
                     env={**as_admin, **make_user(widened(policy["Statement"]))})

    assert done.returncode == 0, done.stderr
    assert done.json["verified"] is True and done.json["target_items"] == 50
