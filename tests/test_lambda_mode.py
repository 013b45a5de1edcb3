"""--live-sync lambda beside the backfill: the handler, driven as Lambda's event source mapping
drives it (batches in shard order, delivered twice, failed half-way and retried, bisected), and a
backfill in another process keep the write rule through the journal; the gate waits for it.

moto never runs a function, and once an event source mapping exists it empties the stream
(../shared/LOCAL_AWS.md), so the run below deploys the function without a mapping and this test's
own thread plays Lambda with the stream's real records.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import boto3
import pytest

from ferry.state import StateStore
from lambdas import journal
from lambdas.dynamo_apply import key_identity
from lambdas.dynamo_handler import Journal, handle
from lambdas.write_rule import DELETED, VERSION
from tables import MIGRATION, by_key, create_table, put_items, scan_all, simple_items
from test_live_sync import lambda_event
from writers import LiveWriter

ITEMS = 3_000

RUN_WITHOUT_MAPPING = """
import sys
from ferry.dynamo import lambda_sync
lambda_sync.ensure_mapping = lambda *args, **kwargs: "played-by-the-test"  # see the module docstring
lambda_sync.start = lambda *args, **kwargs: None
from ferry.cli import main
main(sys.argv[1:])
"""


class PlayedLambda(threading.Thread):
    """What Lambda does with the function: reads the stream's shard in order, once the mapping would
    be enabled (the migration's phase is set), and calls the handler with batches
    of up to 25 (the mapping's batch size, smaller here to get more of them)."""

    def __init__(self, seed: int = 7):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.ways = itertools.cycle(["once", "twice", "retried", "bisected"])
        self.deliveries = Counter()  # how each batch was delivered
        self.phases = Counter()  # the migration's phase at each batch
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.play()
        except BaseException as error:  # reported by the test
            self.error = error

    def play(self) -> None:
        dynamodb, streams = boto3.client("dynamodb"), boto3.client("dynamodbstreams")
        state = Journal(dynamodb, "ferry-state", MIGRATION)
        while not self.stopping.is_set():
            tables = dynamodb.list_tables()["TableNames"]
            if "ferry-state" in tables and journal.phase(dynamodb, "ferry-state", MIGRATION) == "backfill":
                break
            time.sleep(0.05)
        arn = dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]
        [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]  # one in moto
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while not self.stopping.is_set():
            page = streams.get_records(ShardIterator=iterator, Limit=25)
            iterator = page["NextShardIterator"]
            if page["Records"]:
                self.phases[journal.phase(dynamodb, "ferry-state", MIGRATION)] += 1
                self.deliver(page["Records"], lambda records: handle(lambda_event(records), dynamodb, "dst",
                                                                     dynamodb, "src", state))
            else:
                time.sleep(0.1)

    def deliver(self, records: list[dict], invoke) -> None:
        half = len(records) // 2
        how = next(self.ways) if len(records) > 1 else "twice"
        self.deliveries[how] += 1
        if how == "once":
            invoke(records)
        elif how == "twice":  # at least once: the same batch again
            invoke(records)
            invoke(records)
        elif how == "retried":  # the function failed half-way (its writes up to there landed); retried whole
            invoke(records[:self.rng.randrange(1, len(records))])
            invoke(records)
        else:  # failed, then Lambda bisects the batch and retries each half
            invoke(records[:self.rng.randrange(1, len(records))])
            invoke(records[:half])
            invoke(records[half:])

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def test_the_lambda_beside_a_backfill_in_another_process_keeps_the_target_exact(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS, size=200))
    state = StateStore(dynamodb, "ferry-state")
    played, writer = PlayedLambda(), LiveWriter("src", ITEMS, rate_per_second=80)

    run = subprocess.Popen([sys.executable, "-c", RUN_WITHOUT_MAPPING, "table", "src", "dst", "--create-target",
                            "--live-sync", "lambda", "--segments", "2", "--page-size", "25", "--json"],
                           env=run_ferry.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    played.start()
    try:
        deadline = time.monotonic() + 120
        while not (state.exists() and state.load(MIGRATION) and state.load(MIGRATION).copied):
            assert run.poll() is None and time.monotonic() < deadline, "the backfill did not start"
            time.sleep(0.05)
        writer.start()  # inserts, updates and deletes across the key space while the backfill copies
        while run.poll() is None and state.load(MIGRATION).copied < ITEMS * 0.7:
            time.sleep(0.1)
        counts = writer.stop()
        out, err = run.communicate(timeout=300)
    finally:
        played.stop()
        if run.poll() is None:
            run.kill()

    assert played.error is None, played.error
    assert run.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["verified"] is True
    assert sum(counts.values()) > 20 and played.phases["backfill"] > 0  # the Lambda wrote beside the backfill
    assert all(played.deliveries[how] for how in ("once", "twice", "retried", "bisected")), played.deliveries
    target = scan_all(dynamodb, "dst")
    assert by_key(target, "pk") == by_key(scan_all(dynamodb, "src"), "pk")
    assert not any(name in item for item in target for name in (VERSION, DELETED))  # markers cleared
    records = dynamodb.query(TableName="ferry-state", KeyConditionExpression="migration = :m AND begins_with(part, :p)",
                             ExpressionAttributeValues={":m": {"S": MIGRATION}, ":p": {"S": journal.PREFIX}})["Items"]
    assert records and not any("noted" in r for r in records)  # notes gone with the markers; `applied` stays
    assert set(records[0]) == {"migration", "part", "key", "applied"}  # keys and numbers only
    [status] = run_ferry("status", "table", "src", "dst", "--json").json["migrations"]
    assert status["live_sync"]["mode"] == "lambda" and status["live_sync"]["last_batch_records"] > 0

    # `ferry iam-policy --live-sync lambda` prints the policy the deployment put on the function's role
    printed = run_ferry("iam-policy", "table", "src", "dst", "--create-target", "--live-sync", "lambda").json
    iam = boto3.client("iam")
    [role] = [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("ferry-sync-")]
    attached = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="ferry-live-sync")["PolicyDocument"]
    stream = dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]
    expected = json.loads(json.dumps(printed["live_sync_role"]).replace(stream.rsplit("/", 1)[0] + "/*", stream))
    assert attached == expected
    deploying = {s["Sid"]: s["Resource"] for s in printed["operator"]["Statement"]}
    assert deploying["LiveSyncRole"] == [role["Arn"]]
    assert deploying["LiveSyncFunction"] == [boto3.client("lambda").get_function(
        FunctionName=role["RoleName"])["Configuration"]["FunctionArn"]]


def test_the_lambda_gate_waits_until_the_journal_says_each_shards_last_change_is_applied(dynamodb):
    from ferry.dynamo.lambda_sync import wait_until_applied
    from ferry.errors import CannotContinue
    from ferry.state import Phase
    from test_live_sync import stream_records

    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    create_table(dynamodb, "dst")
    state = StateStore(dynamodb, "ferry-state")
    state.ensure_table()
    state.begin(MIGRATION, "src", "dst", total_segments=1)
    state.set_phase(state.load(MIGRATION), Phase.CATCH_UP)  # after the backfill: plain writes, recorded
    put_items(dynamodb, "src", simple_items(30))
    arn = dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams")
    time.sleep(1.1)  # the gate begins after the changes were made
    began = time.time()

    with pytest.raises(CannotContinue, match="shardId.*dead-letter"):  # nothing applied yet
        wait_until_applied(streams, arn, state, MIGRATION, began, timeout=1, poll_interval=0.1)

    records = stream_records(dynamodb, "src")
    handle(lambda_event(records[:-1]), dynamodb, "dst", state=Journal(dynamodb, "ferry-state", MIGRATION))
    with pytest.raises(CannotContinue):  # all but the shard's last change: still closed
        wait_until_applied(streams, arn, state, MIGRATION, began, timeout=0.5, poll_interval=0.1)
    handle(lambda_event(records[-1:]), dynamodb, "dst", state=Journal(dynamodb, "ferry-state", MIGRATION))
    wait_until_applied(streams, arn, state, MIGRATION, began, timeout=5, poll_interval=0.1)  # opens
    assert len(scan_all(dynamodb, "dst")) == 30

    # the migration is done; a re-sync later: its gate needs what the Lambda applied since
    state.set_phase(state.load(MIGRATION), Phase.DONE)
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "k0000001"}, "v": {"S": "later"}})
    time.sleep(1.1)
    again = time.time()
    with pytest.raises(CannotContinue):
        wait_until_applied(streams, arn, state, MIGRATION, again, timeout=0.5, poll_interval=0.1)
    handle(lambda_event(stream_records(dynamodb, "src")[30:]), dynamodb, "dst",
           state=Journal(dynamodb, "ferry-state", MIGRATION))
    wait_until_applied(streams, arn, state, MIGRATION, again, timeout=5, poll_interval=0.1)


def test_the_journal_is_read_for_a_key_asked_twice(dynamodb):
    StateStore(dynamodb, "ferry-state").ensure_table()
    key = {"pk": {"S": "hot"}}  # the last change of a parent shard and of its child
    journal.applied(dynamodb, "ferry-state", MIGRATION, [(key, "250"), (key, "120")])
    assert journal.read(dynamodb, "ferry-state", MIGRATION, [key, key], field="applied") == {
        key_identity(key): "250"}  # and only upwards


def test_a_restart_onto_a_new_stream_forgets_the_journal_of_the_old_one(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(10))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    journal.applied(dynamodb, "ferry-state", MIGRATION, [({"pk": {"S": "k0000001"}}, "9" * 30)])
    # as if the stream had been disabled and enabled again since (moto cannot re-enable one): the
    # migration's recorded stream is not the table's stream any more
    state = StateStore(dynamodb, "ferry-state")
    migration = state.load(MIGRATION)
    migration.stream_arn += "-an-older-one"
    state.set_phase(migration, migration.phase)

    kept = run_ferry("table", "src", "dst", "--json")  # no restart: refused, the journal untouched
    restarted = run_ferry("table", "src", "dst", "--restart", "--json")

    assert kept.returncode == 2 and "--restart" in kept.stderr
    assert restarted.returncode == 0, restarted.stderr
    assert journal.read(dynamodb, "ferry-state", MIGRATION, [{"pk": {"S": "k0000001"}}], field="applied") == {}


def test_a_poller_is_refused_beside_a_lambda_that_applies_the_stream(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    journal.report_progress(dynamodb, "ferry-state", MIGRATION, "lambda", 0.2, 5)  # its last batch, just now

    synced = run_ferry("sync", "table", "src", "dst", "--until-idle", "1")

    assert synced.returncode == 2 and "Lambda" in synced.stderr and len(synced.stderr.strip().splitlines()) == 1
