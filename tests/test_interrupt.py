"""Ctrl-C and SIGTERM (the same handler: Ctrl-C on a table, SIGTERM on a bucket) during a copy: every
backfill segment stops after the page in hand, its checkpoint saved, every bucket copy after the
objects in hand, and the command ends with one line saying how to resume (exit 130); the rerun
copies exactly what was not copied.

The backfill is slowed by a write limit, so that a whole segment takes far longer than a page: a
run that finished its segments before stopping would have copied everything."""

from __future__ import annotations

import signal
import subprocess
import time

from conftest import FERRY
from ferry.state import StateStore
from tables import MIGRATION, create_table, put_items, simple_items

ITEMS, SEGMENTS, PAGE = 1_500, 2, 25


def signal_once_under_way(command: list[str], env: dict, copied, at_least: int, sent: int) -> tuple:
    """Start `ferry COMMAND`, send `sent` once `copied()` reaches `at_least`; (counted then, counted
    once it ended, its exit code, its stderr lines)."""
    running = subprocess.Popen([FERRY, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while copied() < at_least:  # under way
        assert running.poll() is None and time.monotonic() < deadline, running.communicate()
        time.sleep(0.05)
    before = copied()
    running.send_signal(sent)
    _, stderr = running.communicate(timeout=120)
    return before, copied(), running.returncode, [line for line in stderr.splitlines() if line.strip()]


def target_items(dynamodb) -> int:
    return dynamodb.scan(TableName="dst", Select="COUNT")["Count"] if "dst" in dynamodb.list_tables()["TableNames"] \
        else 0


def test_ctrl_c_stops_the_backfill_after_the_page_in_hand_and_the_rerun_resumes(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS))
    command = ["table", "src", "dst", "--create-target", "--segments", str(SEGMENTS), "--page-size", str(PAGE),
               "--max-write-units", "100", "--json"]  # ~15 s for the whole backfill, ~0.5 s a page
    copied_before, copied_after, code, lines = signal_once_under_way(
        command, run_ferry.env(), lambda: target_items(dynamodb), 4 * PAGE, signal.SIGINT)

    assert code == 130, lines
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], (lines, copied_before, copied_after)
    # each segment wrote at most the page in hand and one more begun as the count was taken
    assert copied_after <= copied_before + SEGMENTS * 2 * PAGE, (copied_before, copied_after)
    checkpointed = StateStore(dynamodb, "ferry-state").load(MIGRATION).copied
    assert checkpointed <= copied_after < ITEMS

    resumed = run_ferry(*command[:-3], "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json["resumed"] is True and resumed.json["verified"] is True
    assert resumed.json["copied"] == ITEMS - checkpointed  # nothing checkpointed was copied again


OBJECTS = 400


def target_objects(s3) -> int:
    return sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket="dst-bucket"))


def test_sigterm_stops_a_bucket_copy_after_the_objects_in_hand_and_the_rerun_copies_the_rest(s3, aws_proxy, run_ferry):
    for n in range(OBJECTS):
        s3.put_object(Bucket="src-bucket", Key=f"k/{n:04}", Body=b"x" * 10)
    aws_proxy.inject(latency_ms=150)  # each copy takes a while: 32 in flight, ~2 s for the whole copy at least
    command = ["bucket", "src-bucket", "dst-bucket", "--json"]
    copied_before, copied_after, code, lines = signal_once_under_way(
        command, {**run_ferry.env(), **aws_proxy.env()}, lambda: target_objects(s3), 40, signal.SIGTERM)

    assert code == 130, lines
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], lines
    assert copied_after <= copied_before + 2 * 32, (copied_before, copied_after)  # the copies in flight, twice over
    assert copied_after < OBJECTS

    aws_proxy.inject()
    resumed = run_ferry(*command, env=aws_proxy.env())
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json["verified"] is True and resumed.json["copied"] == OBJECTS - copied_after
