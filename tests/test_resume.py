"""A migration killed with SIGKILL mid-backfill resumes from its checkpoints when rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import FERRY
from ferry.state import StateStore
from tables import MIGRATION, create_table, put_items, scan_all, simple_items

ITEMS = 3_000
SEGMENTS = 2
PAGE = 100


def confirmed_keys(dynamodb, segment: int, count: int) -> list[dict]:
    """The first `count` keys of a segment in scan order: the items of its confirmed pages."""
    keys: list[dict] = []
    kwargs = {"TableName": "src", "Segment": segment, "TotalSegments": SEGMENTS, "Limit": PAGE}
    while len(keys) < count:
        page = dynamodb.scan(**kwargs)
        keys += [{"pk": item["pk"]} for item in page["Items"]]
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return keys[:count]


def test_resume_after_sigkill_copies_only_unconfirmed_pages(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS, size=300))
    command = [FERRY, "table", "src", "dst", "--create-target", "--segments", str(SEGMENTS),
               "--page-size", str(PAGE), "--json"]
    state = StateStore(dynamodb, "ferry-state")

    first = subprocess.Popen(command, env=run_ferry.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        migration = state.load(MIGRATION) if "ferry-state" in dynamodb.list_tables()["TableNames"] else None
        if migration and migration.copied >= 1_000:
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first run finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    at_kill = state.load(MIGRATION)
    confirmed = at_kill.copied
    assert 0 < confirmed < ITEMS and at_kill.phase == "backfill"
    assert not all(s.done for s in at_kill.segments.values())
    # Independent proof that confirmed pages are not copied again: remove one confirmed item from
    # the target; a rerun that re-copied confirmed pages would bring it back.
    segment = max(at_kill.segments.values(), key=lambda s: s.items)
    witness = confirmed_keys(dynamodb, segment.segment, segment.items)[0]
    dynamodb.delete_item(TableName="dst", Key=witness)

    rerun = run_ferry(*command[1:])

    assert rerun.returncode == 1, rerun.stderr  # the witness is missing, so verify must say so
    summary = rerun.json
    assert summary["resumed"] is True
    assert summary["copied"] == ITEMS - confirmed  # exactly the unconfirmed rest
    assert summary["source_items"] == ITEMS and summary["target_items"] == ITEMS - 1
    assert "Item" not in dynamodb.get_item(TableName="dst", Key=witness)

    source_item = dynamodb.get_item(TableName="src", Key=witness)["Item"]
    dynamodb.put_item(TableName="dst", Item=source_item)
    final = run_ferry("verify", "table", "src", "dst", "--json")
    assert final.returncode == 0 and final.json["equal"] is True
    assert len(scan_all(dynamodb, "dst")) == ITEMS
