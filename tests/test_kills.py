"""Kills anywhere: `kill -9` of a command at a random moment, under the fault proxy, then the same command again.

Each case kills one command after a delay drawn from a seeded generator (FERRY_KILL_SEED), while
the service keeps writing where the command has live sync; the rerun must end equal. Which moment
the kill meets differs from machine to machine: that is the point, and each case checks that the
killed run was still running and had been working against AWS (through the faults) when it died.
test_resume.py and test_bucket.py prove, at a controlled moment, that a rerun copies nothing
confirmed before the kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess

import boto3
import pytest

from conftest import FERRY, PRODUCTION_FAULTS
from tables import by_key, create_table, put_items, scan_all, simple_items
from writers import BucketWriter, LiveWriter

RNG = random.Random(int(os.environ.get("FERRY_KILL_SEED", "13")))


def kill_after(command: list[str], env: dict, seconds: float) -> bool:
    """Start a `ferry` command, SIGKILL its whole process group after `seconds`; whether it was still running."""
    process = subprocess.Popen([FERRY, *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def assert_worked_before_the_kill(injected: dict) -> None:
    """The killed run was past its start-up, talking to AWS through the faults, when it died."""
    assert injected.get("requests", 0) >= 20 and injected.get("throttle", 0) + injected.get("server_error", 0) > 0, \
        injected


def equal_tables(dynamodb) -> bool:
    return by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")


def bucket_keys(s3, bucket: str) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


# the poller's own kill is also in test_live_sync.py (without faults): here only with FERRY_ALL_KILLS=1
@pytest.mark.parametrize("command", ["table", "verify-repair"] + (["sync-table"] if os.environ.get("FERRY_ALL_KILLS")
                                                                  else []))
def test_a_table_command_killed_at_a_random_moment_ends_equal_when_rerun(dynamodb, run_ferry, aws_proxy, command):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(1_500))
    env = {**run_ferry.env(), **aws_proxy.env()}
    if command != "table":
        assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    if command == "verify-repair":
        for n in range(0, 1_500, 4):  # a quarter of the target lost, a few changed
            dynamodb.delete_item(TableName="dst", Key={"pk": {"S": f"k{n:07d}"}})
        dynamodb.put_item(TableName="dst", Item={"pk": {"S": "k0000001"}, "n": {"N": "-1"}})
    args = {"table": ["table", "src", "dst", "--create-target", "--segments", "2", "--page-size", "100"],
            "sync-table": ["sync", "table", "src", "dst"],
            "verify-repair": ["verify", "table", "src", "dst", "--repair"]}[command]
    writer = LiveWriter("src", 1_500, rate_per_second=30, seed=len(command)) if command != "verify-repair" else None
    aws_proxy.inject(seed=RNG.randrange(1000), **PRODUCTION_FAULTS)
    if writer:
        writer.start()
    killed = kill_after(args, env, RNG.uniform(5, 10))
    before_rerun = aws_proxy.injected()
    if writer:
        writes = writer.stop()
        assert sum(writes.values()) > 0

    rerun = run_ferry(*args, *(["--until-idle", "1"] if command == "sync-table" else []), "--json", env=aws_proxy.env())

    assert killed, "the command finished before the kill: nothing was tested"
    assert_worked_before_the_kill(before_rerun)
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    if command == "table":  # the writer may have run past the rerun's end: live sync brings in the rest
        assert run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json").returncode == 0
    assert equal_tables(dynamodb)


@pytest.mark.parametrize("command", ["bucket", "sync-bucket"])
def test_a_bucket_command_killed_at_a_random_moment_ends_equal_when_rerun(aws, run_ferry, aws_proxy, command):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="src-bucket")
    s3.create_bucket(Bucket="dst-bucket")
    for i in range(400):
        s3.put_object(Bucket="src-bucket", Key=f"obj-{i:04d}", Body=f"v{i}".encode())
    env = {**run_ferry.env(), **aws_proxy.env()}
    if command == "sync-bucket":
        assert run_ferry("bucket", "src-bucket", "dst-bucket", "--delete", "--json").returncode == 0
    args = {"bucket": ["bucket", "src-bucket", "dst-bucket", "--delete"],
            "sync-bucket": ["sync", "bucket", "src-bucket", "dst-bucket"]}[command]
    writer = BucketWriter("src-bucket", 400)
    aws_proxy.inject(seed=RNG.randrange(1000), **PRODUCTION_FAULTS)
    writer.start()
    killed = kill_after(args, env, RNG.uniform(7, 12))
    before_rerun = aws_proxy.injected()
    assert writer.stop() > 0

    rerun = run_ferry(*args, *(["--until-idle", "2"] if command == "sync-bucket" else []), "--json",
                      env=aws_proxy.env())
    synced = run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2", "--json")

    assert killed, "the command finished before the kill: nothing was tested"
    assert_worked_before_the_kill(before_rerun)
    assert rerun.returncode in (0, 1), (rerun.stdout, rerun.stderr)  # 1: the writes outran its final check
    assert synced.returncode == 0, synced.stderr
    assert bucket_keys(s3, "dst-bucket") == bucket_keys(s3, "src-bucket")
