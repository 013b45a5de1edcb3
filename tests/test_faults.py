"""Every path ends verified equal while AWS throttles, fails, drops connections and leaves work unprocessed.

The `ferry` runs go through tests/aws_proxy.py with the issue's mix: 10% throttles, 2% 5xx, 1% dropped
connections (half of them after moto acted) and 10% of each batch's entries unprocessed. Each test
checks that faults were injected, so a quiet proxy cannot make it pass.
"""

from __future__ import annotations

import os

import boto3
import pytest

from conftest import PRODUCTION_FAULTS
from tables import by_key, create_table, put_items, scan_all, simple_items
from writers import BucketWriter, LiveWriter

MIB = 2**20
SMALL_THRESHOLD = ["--multipart-threshold", str(5 * MIB), "--part-size", str(5 * MIB)]


def assert_faults_met(injected: dict, kinds=("throttle", "server_error", "unprocessed")) -> None:
    for kind in kinds:
        assert injected.get(kind, 0) > 0, injected
    assert injected.get("drop_before", 0) + injected.get("drop_after", 0) > 0, injected


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("FERRY_FAULT_SEEDS", "1").split(",")])
def test_a_table_migration_with_live_writes_ends_verified_equal_under_faults(dynamodb, run_ferry, aws_proxy, seed):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(600))
    writer = LiveWriter("src", 600, rate_per_second=30, seed=seed)
    aws_proxy.inject(seed=seed, **PRODUCTION_FAULTS)
    writer.start()

    result = run_ferry("table", "src", "dst", "--create-target", "--segments", "4", "--page-size", "100", "--json",
                       env=aws_proxy.env())
    counts = writer.stop()
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.json["verified"] is True and sum(counts.values()) > 20
    dynamodb.put_item(TableName="dst", Item={"pk": {"S": "k0000007"}, "n": {"N": "-1"}})  # drift, for the repair
    dynamodb.delete_item(TableName="dst", Key={"pk": {"S": "k0000008"}})
    repaired = run_ferry("verify", "table", "src", "dst", "--repair", "--json", env=aws_proxy.env())
    synced = run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json", env=aws_proxy.env())

    assert repaired.returncode == 0, repaired.stderr
    assert synced.returncode == 0, synced.stderr
    assert by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")
    assert_faults_met(aws_proxy.injected())


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("FERRY_FAULT_SEEDS", "2").split(",")])
def test_a_bucket_migration_with_live_writes_ends_verified_equal_under_faults(s3, run_ferry, aws_proxy, seed):
    for i in range(60):
        s3.put_object(Bucket="src-bucket", Key=f"obj-{i:04d}", Body=f"v{i}".encode(), Metadata={"n": str(i)})
    s3.put_object(Bucket="src-bucket", Key="big.bin", Body=os.urandom(11 * MIB))  # three parts: multipart copy
    writer = BucketWriter("src-bucket", 60)
    aws_proxy.inject(seed=seed, **PRODUCTION_FAULTS)
    writer.start()

    result = run_ferry("bucket", "src-bucket", "dst-bucket", "--delete", *SMALL_THRESHOLD, "--json", env=aws_proxy.env())
    writes = writer.stop()
    synced = run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2", "--json", env=aws_proxy.env())
    s3.put_object(Bucket="dst-bucket", Key="obj-0003", Body=b"drifted")  # for the repair
    s3.put_object(Bucket="dst-bucket", Key="only-in-target", Body=b"extra")
    repaired = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--repair", "--delete", "--json",
                         env=aws_proxy.env())
    injected = aws_proxy.injected()
    aws_proxy.inject()
    final = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--deep", "--json")

    assert result.returncode in (0, 1), (result.stdout, result.stderr)  # 1: writes went on past the drain
    assert synced.returncode == 0, (synced.stdout, synced.stderr)
    assert repaired.returncode == 0, (repaired.stdout, repaired.stderr)
    assert final.returncode == 0 and final.json["equal"] is True, final.stdout
    assert repaired.json["repaired"] >= 1 and writes > 20
    assert_faults_met(injected, kinds=("throttle", "server_error"))  # no batch writes on the bucket path


def test_a_run_that_exhausts_its_retries_exits_3_naming_the_resource_and_step_and_the_same_command_resumes(
        dynamodb, run_ferry, aws_proxy):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(300))
    env = {**aws_proxy.env(), "AWS_MAX_ATTEMPTS": "2", "FERRY_RETRY_DELAYS": "0,0,0"}
    aws_proxy.inject(seed=1, server_error=1.0, only=["BatchWriteItem"])  # the target refuses every batch

    failed = run_ferry("table", "src", "dst", "--create-target", "--segments", "1", "--page-size", "25", "--json",
                       env=env)  # one batch per page: the first page fails each attempt of the task
    refused = aws_proxy.injected()
    aws_proxy.inject()
    resumed = run_ferry("table", "src", "dst", "--create-target", "--segments", "1", "--json", env=env)

    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert lines[0].startswith("ferry: failed: backfill src -> dst segment "), lines[0]
    assert "AWS answered InternalServerError to BatchWriteItem" in lines[0]
    assert lines[0].endswith("rerun the same command to resume")
    assert refused["server_error"] == 2 * 4  # AWS_MAX_ATTEMPTS=2, for the task's first run and its three retries
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json["verified"] is True and resumed.json["resumed"] is True


def test_a_bad_retry_setting_is_one_line_and_exit_2(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    result = run_ferry("table", "src", "dst", "--create-target", env={"FERRY_RETRY_DELAYS": "soon"})
    assert result.returncode == 2 and result.stderr.startswith("ferry: error: FERRY_RETRY_DELAYS must be"), result.stderr
    assert dynamodb.list_tables()["TableNames"] == ["src"]


def test_a_plans_run_and_live_sync_end_equal_under_faults(dynamodb, run_ferry, aws_proxy, tmp_path):
    from test_plan import keys, same_table, set_up_sources, write_plan

    set_up_sources(dynamodb, items=300)  # a table and a bucket, moved together
    path = write_plan(tmp_path)
    aws_proxy.inject(seed=3, **{**PRODUCTION_FAULTS, "drop": 0.03})  # a few hundred requests: drops made likelier

    ran = run_ferry("run", path, "--json", env=aws_proxy.env())
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert ran.json["verified"] is True
    dynamodb.put_item(TableName="orders", Item={"pk": {"S": "after-the-run"}, "n": {"N": "1"}})
    dynamodb.delete_item(TableName="orders", Key={"pk": {"S": "k0000003"}})
    s3 = boto3.client("s3")
    s3.put_object(Bucket="media", Key="2026/after-the-run.bin", Body=b"new")
    s3.delete_object(Bucket="media", Key="2026/3.bin")
    synced = run_ferry("sync", "plan", path, "--until-idle", "2", "--json", env=aws_proxy.env())

    assert synced.returncode == 0, (synced.stdout, synced.stderr)
    assert same_table(dynamodb, "orders", "orders-v2") and keys("media") == keys("media-v2")
    assert_faults_met(aws_proxy.injected())
