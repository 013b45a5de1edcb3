"""Least privilege: a whole `ferry table` on moto's server with IAM enforced, as a user holding exactly
the policy `ferry iam-policy table` prints; with an action of any one step taken away it stops with
a line naming the operation that was denied, and where that action is one of the first writes,
having written nothing. (On AWS, IAM's policy simulator finds any missing action before the first
write: tests/test_permissions.py; moto's server does not simulate.)

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

# An action of each step: the checks (DescribeTable), enabling the stream (UpdateTable), the state table
# (Query), creating the target (CreateTable), live sync (GetShardIterator: the catch-up gate must not wait
# for a poller that was refused), the backfill's writes (BatchWriteItem). The backfill's Scan was checked
# when this test was written, and is left out since, for the suite's time (its path is BatchWriteItem's).
NEEDED_BY_EVERY_RUN = ["dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:Query", "dynamodb:CreateTable",
                       "dynamodb:GetShardIterator", "dynamodb:BatchWriteItem"]
# Denied, these end the run before it has written to the source: the checks (reading the tables and the
# state), creating the state table and the target, enabling the stream (last: the tables made stay, empty)
CHECKED_OR_WRITTEN_FIRST = {"dynamodb:DescribeTable", "dynamodb:Query", "dynamodb:UpdateTable", "dynamodb:CreateTable"}
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

    def written() -> dict:
        return {"tables": sorted(set(dynamodb.list_tables()["TableNames"]) - {"src"}),
                "stream": bool(dynamodb.describe_table(TableName="src")["Table"].get("StreamSpecification", {})
                               .get("StreamEnabled"))}

    def start_afresh() -> None:  # what a refused run left: the target, the state table, the stream (a new
        for table in dynamodb.list_tables()["TableNames"]:  # source: moto never enables a stream twice)
            dynamodb.delete_table(TableName=table)
        create_table(dynamodb, "src")
        put_items(dynamodb, "src", simple_items(50))

    start_afresh()
    printed = run_ferry("iam-policy", "table", "src", "dst", "--create-target", env=as_admin)
    assert printed.returncode == 0, printed.stderr
    policy = json.loads(printed.stdout)["operator"]
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ReadSource"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/src"]
    assert resources["ReadSourceStream"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/src/stream/*"]
    assert resources["WriteTarget"][0] == "arn:aws:dynamodb:us-east-1:123456789012:table/dst"
    assert resources["StateTable"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/ferry-state"]
    assert resources["CheckOwnPermissions"] == ["arn:aws:iam::123456789012:user/user0"]  # the caller

    def widened(statements: list[dict], without: str | None = None) -> dict:  # moto matches resources as "*"
        kept = [{**s, "Action": [a for a in s["Action"] if a != without], "Resource": "*"} for s in statements]
        return {"Version": policy["Version"], "Statement": [s for s in kept if s["Action"]]}

    for left_out in NEEDED_BY_EVERY_RUN:  # one per step; taken out of every statement that grants it
        start_afresh()
        refused = run_ferry("table", "src", "dst", "--create-target", "--json",
                            env={**as_admin, **make_user(widened(policy["Statement"], without=left_out))})
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"access denied to {left_out.split(':')[1]} " in lines[0], (left_out, lines)
        assert "Traceback" not in refused.stderr
        if left_out in CHECKED_OR_WRITTEN_FIRST:  # bad input: the source untouched, only empty tables it names
            assert refused.returncode == 2, (left_out, refused.stderr)
            left = written()
            assert left["stream"] is False, (left_out, refused.stderr)
            assert all(f"'{table}'" in lines[0] and not dynamodb.scan(TableName=table)["Items"]
                       for table in left["tables"]), (left_out, left, lines)
        else:  # a later step: the run stops there, naming it
            assert refused.returncode == 3, (left_out, refused.stderr)

    start_afresh()
    done = run_ferry("table", "src", "dst", "--create-target", "--json",
                     env={**as_admin, **make_user(widened(policy["Statement"]))})

    assert done.returncode == 0, done.stderr
    assert done.json["verified"] is True and done.json["target_items"] == 50


def for_moto(policy: dict, without: str | None = None) -> dict:
    """The printed policy as moto's server can enforce it (see the bucket test's docstring; moto 5.2.6
    also checks many S3 requests under their operation's name, CopyObject or HeadObject), less
    the action `without`: DynamoDB, SQS and EventBridge statements on "*", and moto's own names for HEAD bucket,
    DeleteObjects and the SQS batch requests added beside the real ones."""
    moto_names = {"s3:ListBucket": ["s3:HeadBucket", "s3:ListObjectsV2"], "sqs:DeleteMessage": ["sqs:DeleteMessageBatch"],
                  # moto 5.2.6 checks these requests under their operation's name
                  "s3:GetBucketNotification": ["s3:GetBucketNotificationConfiguration"],
                  "s3:PutBucketNotification": ["s3:PutBucketNotificationConfiguration"],
                  "s3:GetObject": ["s3:HeadObject"], "s3:DeleteObject": ["s3:DeleteObjects"],
                  "s3:PutObject": ["s3:CopyObject", "s3:UploadPartCopy", "s3:CreateMultipartUpload",
                                   "s3:CompleteMultipartUpload"],
                  "s3:ListBucketMultipartUploads": ["s3:ListMultipartUploads"],
                  "s3:GetBucketObjectLockConfiguration": ["s3:GetObjectLockConfiguration"],
                  "sqs:ChangeMessageVisibility": ["sqs:ChangeMessageVisibilityBatch"]}
    statements = []
    for s in policy["Statement"]:
        actions = [a for a in s["Action"] if a != without]
        actions += [extra for a in actions for extra in moto_names.get(a, [])]
        on_any = any(a.startswith(("dynamodb:", "sqs:", "events:")) for a in actions)
        if actions:
            statements.append({**s, "Action": actions, "Resource": "*" if on_any else s["Resource"]})
        if "s3:DeleteObject" in actions:  # moto checks a DeleteObjects request on the bucket's own ARN
            buckets = [r.split("/", 1)[0] for r in s["Resource"]]
            statements.append({"Sid": f"Moto{s['Sid']}", "Effect": "Allow", "Action": ["s3:DeleteObject", "s3:DeleteObjects"],
                               "Resource": buckets})
    return {"Version": policy["Version"], "Statement": statements}


def test_a_bucket_migration_succeeds_with_exactly_the_printed_policy_and_stops_without_any_steps_action(
        run_ferry, enforcing_moto):
    """moto checks S3 actions on the exact bucket and object ARNs, so those stay as printed; it checks
    SQS on "*" until a queue exists, so the queue statement is widened; it asks for "s3:HeadBucket",
    which is no IAM action (AWS checks s3:ListBucket), and for s3:DeleteObject on the bucket's own ARN
    for a DeleteObjects request (AWS checks each object's), and for "sqs:DeleteMessageBatch" (AWS checks
    sqs:DeleteMessage), so those are added. `ferry status --bucket` is left out: moto refuses any
    signed Lambda request with SignatureDoesNotMatch while it enforces IAM."""
    endpoint, admin, make_user = enforcing_moto
    as_admin = {"FERRY_RETRY_DELAYS": "0,0,0", "AWS_MAX_ATTEMPTS": "2", **admin}
    credentials = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": admin["AWS_ACCESS_KEY_ID"],
                   "aws_secret_access_key": admin["AWS_SECRET_ACCESS_KEY"]}
    s3, sqs = boto3.client("s3", **credentials), boto3.client("sqs", **credentials)
    for bucket in ("src", "dst"):
        s3.create_bucket(Bucket=bucket)
    for n in range(6):
        s3.put_object(Bucket="src", Key=f"data/{n}", Body=b"x" * n, Tagging="kind=data")
    s3.put_object(Bucket="src", Key="outside", Body=b"not ours")
    s3.put_object(Bucket="dst", Key="data/extra", Body=b"deleted by --delete")

    printed = run_ferry("iam-policy", "bucket", "src", "dst", "--prefix", "data/", env=as_admin)
    assert printed.returncode == 0, printed.stderr
    policy = json.loads(printed.stdout)["operator"]
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ReadSourceObjects"] == ["arn:aws:s3:::src/data/*"]
    assert resources["WriteTargetObjects"] == ["arn:aws:s3:::dst/data/*"]
    assert [arn.rsplit(":", 1)[0] for arn in resources["EventQueues"]] == ["arn:aws:sqs:us-east-1:123456789012"] * 2

    def as_printed(without: str | None = None) -> dict:
        return make_user(for_moto(policy, without))

    def routed() -> bool:
        return bool(s3.get_bucket_notification_configuration(Bucket="src").get("QueueConfigurations"))

    # one action of each step: the checks, routing the events, the copy (refused runs write no object)
    for left_out in ("s3:ListBucket", "s3:PutBucketNotification", "s3:PutObject"):
        refused = run_ferry("bucket", "src", "dst", "--prefix", "data/", "--json", env={**as_admin, **as_printed(left_out)})
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "access denied to " in lines[0], (left_out, lines)
        assert refused.returncode == (3 if left_out == "s3:PutObject" else 2), (left_out, lines)
        assert not routed() or left_out == "s3:PutObject", left_out
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="dst")["Contents"]] == ["data/extra"], left_out

    user = {**as_admin, **as_printed()}
    done = run_ferry("bucket", "src", "dst", "--prefix", "data/", "--delete", "--json", env=user)
    assert done.returncode == 0, done.stderr
    assert done.json["verified"] is True and done.json["copied"] == 6 and done.json["deleted"] == 1
    s3.put_object(Bucket="src", Key="data/new", Body=b"live")
    synced = run_ferry("sync", "bucket", "src", "dst", "--prefix", "data/", "--until-idle", "2", "--json", env=user)
    assert synced.returncode == 0, synced.stderr
    deep = run_ferry("verify", "bucket", "src", "dst", "--prefix", "data/", "--deep", "--json", env=user)
    assert deep.returncode == 0 and deep.json["equal"] is True, (deep.stdout, deep.stderr)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="dst")["Contents"]) == sorted(
        [f"data/{n}" for n in range(6)] + ["data/new"])
    assert sqs.list_queues()["QueueUrls"]  # the run's queues, made under the printed policy


def test_credentials_no_longer_valid_are_one_line_and_exit_2_before_any_write(run_ferry, enforcing_moto):
    """Keys deleted (as expired or rotated ones are): refused by the checks, nothing written."""
    endpoint, admin, make_user = enforcing_moto
    as_admin = {"FERRY_RETRY_DELAYS": "0,0,0", "AWS_MAX_ATTEMPTS": "2", **admin}
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(5))
    stale = make_user(ADMIN)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id=admin["AWS_ACCESS_KEY_ID"], aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])
    iam.delete_access_key(UserName="user1", AccessKeyId=stale["AWS_ACCESS_KEY_ID"])

    refused = run_ferry("table", "src", "dst", "--create-target", env={**as_admin, **stale})

    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "credentials were refused" in lines[0] and "Traceback" not in refused.stderr
    assert dynamodb.list_tables()["TableNames"] == ["src"]
    assert "StreamSpecification" not in dynamodb.describe_table(TableName="src")["Table"]


def test_a_plan_runs_with_exactly_the_policy_printed_for_it(run_ferry, enforcing_moto, tmp_path):
    """`ferry iam-policy plan` covers every pair of the plan (both directions) and the cutover's parameters."""
    from test_plan import SMALL_PLAN

    endpoint, admin, make_user = enforcing_moto
    as_admin = {"FERRY_RETRY_DELAYS": "0,0,0", "AWS_MAX_ATTEMPTS": "2", **admin}
    credentials = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": admin["AWS_ACCESS_KEY_ID"],
                   "aws_secret_access_key": admin["AWS_SECRET_ACCESS_KEY"]}
    dynamodb, s3 = boto3.client("dynamodb", **credentials), boto3.client("s3", **credentials)
    create_table(dynamodb, "orders")
    put_items(dynamodb, "orders", simple_items(30))
    for bucket in ("media", "media-v2"):
        s3.create_bucket(Bucket=bucket)
    for n in range(5):
        s3.put_object(Bucket="media", Key=f"2026/{n}", Body=b"m" * n)
    path = tmp_path / "plan.yaml"
    path.write_text(SMALL_PLAN)

    printed = run_ferry("iam-policy", "plan", str(path), env=as_admin)
    assert printed.returncode == 0, printed.stderr
    policy = json.loads(printed.stdout)["operator"]
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ReadSource1"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/orders"]
    assert resources["ReadSource3"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/orders-v2"]  # syncing back
    assert resources["CutoverParameters"] == [f"arn:aws:ssm:us-east-1:123456789012:parameter/orders-service/{name}"
                                              for name in ("table", "bucket")]
    assert len({s["Sid"] for s in policy["Statement"]}) == len(policy["Statement"])

    ran = run_ferry("run", str(path), "--json", env={**as_admin, **make_user(for_moto(policy))})
    assert ran.returncode == 0, ran.stderr
    assert ran.json["verified"] is True
