"""Live sync: the target converges to a source that keeps changing, through kills and poison records."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import zipfile

import boto3
import pytest

from conftest import FERRY
from ferry.dynamo import lambda_sync
from ferry.state import StateStore
from lambdas.dynamo_apply import apply_stream_records, json_form
from lambdas import dynamo_handler
from lambdas.dynamo_handler import handle
from tables import MIGRATION, by_key, create_table, put_items, scan_all, simple_items
from writers import LiveWriter

ITEMS = 3_000


def wait_for_backfill(dynamodb, at_least: int, process: subprocess.Popen, timeout: float = 120) -> None:
    state = StateStore(dynamodb, "ferry-state")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "ferry finished before it could be killed"
        migration = state.load(MIGRATION) if state.exists() else None
        if migration and migration.copied >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("the backfill did not progress")


# straight through (no kill) only with FERRY_ALL_KILLS=1: tests/test_writes_during_backfill.py runs that case
@pytest.mark.parametrize("killed_during_backfill", ([False] if os.environ.get("FERRY_ALL_KILLS") else []) + [True],
                         ids=(["straight"] if os.environ.get("FERRY_ALL_KILLS") else []) + ["killed-and-rerun"])
def test_target_equals_source_after_continuous_writes_during_ferry_table(dynamodb, run_ferry, killed_during_backfill):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(ITEMS))
    command = ["table", "src", "dst", "--create-target", "--segments", "2", "--page-size", "50", "--json"]
    writer = LiveWriter("src", ITEMS)
    writer.start()
    if killed_during_backfill:
        first = subprocess.Popen([FERRY, *command], env=run_ferry.env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_backfill(dynamodb, ITEMS // 3, first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    result = run_ferry(*command)
    counts = writer.stop()

    assert result.returncode == 0, result.stderr  # verified equal while the writes went on
    assert result.json["verified"] is True and result.json["resumed"] is killed_during_backfill
    assert min(counts.values()) > 0
    # The writer ran past the end of `ferry table`; the poller brings in its last writes.
    synced = run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json")
    assert synced.returncode == 0, synced.stderr
    assert by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")
    [status] = run_ferry("status", "table", "src", "dst", "--json").json["migrations"]
    assert status["live_sync"]["mode"] == "poller" and 0 <= status["live_sync"]["lag_seconds"] < 60


def test_poller_killed_and_restarted_while_records_flow_loses_nothing(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(500))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    writer = LiveWriter("src", 500, rate_per_second=200)
    writer.start()
    poller = subprocess.Popen([FERRY, "sync", "table", "src", "dst", "--json"], env=run_ferry.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = StateStore(dynamodb, "ferry-state")
    deadline = time.monotonic() + 60
    before = dict(state.load(MIGRATION).shards)
    while state.load(MIGRATION).shards == before and time.monotonic() < deadline:
        time.sleep(0.1)  # until the poller has applied and checkpointed some records
    assert state.load(MIGRATION).shards != before, "the poller never checkpointed before the kill"
    time.sleep(0.5)
    os.killpg(poller.pid, signal.SIGKILL)
    poller.wait()
    time.sleep(1)  # records keep flowing while no poller runs
    counts = writer.stop()

    restarted = run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json")

    assert restarted.returncode == 0, restarted.stderr
    assert restarted.json["records"] > 0 and sum(counts.values()) > 100
    assert by_key(scan_all(dynamodb, "dst"), "pk") == by_key(scan_all(dynamodb, "src"), "pk")


def test_poller_stops_cleanly_on_sigterm(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(50))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    poller = subprocess.Popen([FERRY, "sync", "table", "src", "dst", "--json"], env=run_ferry.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "late"}})
    deadline = time.monotonic() + 60  # Prefect's start-up, then following the stream
    while "Item" not in dynamodb.get_item(TableName="dst", Key={"pk": {"S": "late"}}):
        assert poller.poll() is None and time.monotonic() < deadline, "the poller did not apply the change"
        time.sleep(0.1)
    poller.send_signal(signal.SIGTERM)
    out, err = poller.communicate(timeout=60)
    assert poller.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["records"] >= 1
    assert "Item" in dynamodb.get_item(TableName="dst", Key={"pk": {"S": "late"}})


def lambda_event(records: list[dict]) -> dict:
    """Stream records as Lambda delivers them: JSON, binary values base64-encoded."""
    def timestamps(record):
        change = dict(record["dynamodb"])
        change["ApproximateCreationDateTime"] = change["ApproximateCreationDateTime"].timestamp()
        return {**record, "dynamodb": change}

    return {"Records": [json_form(timestamps(r)) for r in records]}


def stream_records(dynamodb, table: str) -> list[dict]:
    streams = boto3.client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return streams.get_records(ShardIterator=iterator)["Records"]


def test_a_poison_record_is_reported_by_sequence_number_and_later_records_still_apply(dynamodb):
    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    # The target indexes `g`: an empty string there is fine on the source, rejected by the target's index.
    create_table(dynamodb, "dst", ExtraAttributes=[{"AttributeName": "g", "AttributeType": "S"}],
                 GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                          "Projection": {"ProjectionType": "ALL"}}])
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "a"}, "g": {"S": "1"}, "b": {"B": b"\x00\xff"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "poison"}, "g": {"S": ""}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "c"}, "g": {"S": "3"}})
    dynamodb.delete_item(TableName="src", Key={"pk": {"S": "a"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "d"}, "g": {"S": "4"}})
    records = stream_records(dynamodb, "src")
    poison_sequence = records[1]["dynamodb"]["SequenceNumber"]

    response = handle(lambda_event(records), dynamodb, "dst")

    assert response == {"batchItemFailures": [{"itemIdentifier": poison_sequence}]}
    assert sorted(i["pk"]["S"] for i in scan_all(dynamodb, "dst")) == ["c", "d"]  # the rest applied, in order
    again = handle(lambda_event(records), dynamodb, "dst")  # Lambda's retry: idempotent
    assert again == response and sorted(i["pk"]["S"] for i in scan_all(dynamodb, "dst")) == ["c", "d"]


def test_keys_only_records_are_resolved_by_a_consistent_read_of_the_source(dynamodb):
    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    create_table(dynamodb, "dst")
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "kept"}, "v": {"N": "1"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "kept"}, "v": {"N": "2"}})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "gone"}, "v": {"N": "1"}})
    dynamodb.delete_item(TableName="src", Key={"pk": {"S": "gone"}})
    records = stream_records(dynamodb, "src")
    assert all("NewImage" not in r["dynamodb"] for r in records)

    result = apply_stream_records(dynamodb, "dst", records, guarded=False, source_client=dynamodb, source_table="src")

    assert scan_all(dynamodb, "dst") == [{"pk": {"S": "kept"}, "v": {"N": "2"}}]
    assert (result.puts, result.deletes) == (1, 1)


def deploy(dynamodb, target_role_arn=None):
    if "src" not in dynamodb.list_tables()["TableNames"]:
        create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        create_table(dynamodb, "dst")
    source, target = (dynamodb.describe_table(TableName=t)["Table"] for t in ("src", "dst"))
    return lambda_sync.deploy(
        boto3.client("iam"), boto3.client("lambda"), boto3.client("sqs"), boto3.client("logs"),
        source="src", target="dst", stream_arn=source["LatestStreamArn"], source_table_arn=source["TableArn"],
        target_table_arn=target["TableArn"], target_role_arn=target_role_arn, state_table="ferry-state",
        state_table_arn=target["TableArn"].replace(":table/dst", ":table/ferry-state"), migration_id=MIGRATION)


def test_lambda_deployment_is_least_privilege_disabled_until_started_and_idempotent(dynamodb):
    deployment = deploy(dynamodb)
    iam, lambda_client = boto3.client("iam"), boto3.client("lambda")
    source = dynamodb.describe_table(TableName="src")["Table"]

    policy = iam.get_role_policy(RoleName=deployment.function_name, PolicyName="ferry-live-sync")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    log_group = f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{deployment.function_name}"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for value in statement["Action"] + statement["Resource"]:
            assert "*" not in value or value == f"{log_group}:log-stream:*", statement  # its own log streams
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    target_arn = dynamodb.describe_table(TableName="dst")["Table"]["TableArn"]
    assert resources == {source["LatestStreamArn"], source["TableArn"], target_arn, deployment.dead_letter_queue_arn,
                         log_group, f"{log_group}:log-stream:*", target_arn.replace(":table/dst", ":table/ferry-state")}
    journal = next(s for s in policy["Statement"] if s["Sid"] == "MigrationJournal")
    assert set(journal["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    writes = next(s for s in policy["Statement"] if s["Sid"] == "WriteTargetTable")
    assert set(writes["Action"]) == {"dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}

    function = lambda_client.get_function(FunctionName=deployment.function_name)["Configuration"]
    assert function["Handler"] == "lambdas.dynamo_handler.handler" and function["Role"] == deployment.role_arn
    assert function["Environment"]["Variables"] == {"TARGET_TABLE": "dst", "TARGET_REGION": "us-east-1",
                                                    "SOURCE_TABLE": "src", "STATE_TABLE": "ferry-state",
                                                    "MIGRATION_ID": MIGRATION}
    mapping = lambda_client.get_event_source_mapping(UUID=deployment.mapping_uuid)
    assert mapping["EventSourceArn"] == source["LatestStreamArn"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["State"] in ("Disabled", "Disabling")  # until started
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == lambda_sync.MAX_RETRY_ATTEMPTS
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == deployment.dead_letter_queue_arn
    assert deployment.dead_letter_queue_arn.endswith(":ferry-sync-src-dst-dlq")

    again = deploy(dynamodb)  # a rerun updates instead of failing
    assert again == deployment
    assert len(lambda_client.list_event_source_mappings(FunctionName=deployment.function_name)["EventSourceMappings"]) == 1
    lambda_sync.start(lambda_client, deployment)
    assert lambda_client.get_event_source_mapping(UUID=deployment.mapping_uuid)["State"] in ("Enabled", "Enabling")


def test_the_lambda_package_holds_only_the_lambdas_package():
    names = zipfile.ZipFile(io.BytesIO(lambda_sync.package())).namelist()
    assert "lambdas/dynamo_handler.py" in names and "lambdas/dynamo_apply.py" in names
    assert all(name.startswith("lambdas/") for name in names)


def test_ferry_table_with_lambda_live_sync_deploys_then_enables_the_mapping_after_the_backfill(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(200))

    result = run_ferry("table", "src", "dst", "--create-target", "--live-sync", "lambda", "--json")

    assert result.returncode == 0, result.stderr
    assert result.json["verified"] is True and result.json["copied"] == 200
    lambda_client = boto3.client("lambda")
    [mapping] = lambda_client.list_event_source_mappings(FunctionName="ferry-sync-src-dst")["EventSourceMappings"]
    assert mapping["State"] in ("Enabled", "Enabling")
    assert mapping["EventSourceArn"] == dynamodb.describe_table(TableName="src")["Table"]["LatestStreamArn"]


def test_an_unknown_live_sync_mode_is_bad_input(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    result = run_ferry("table", "src", "dst", "--create-target", "--live-sync", "kinesis")
    assert result.returncode == 2 and result.stderr.startswith("ferry: error: --live-sync: ")
    assert dynamodb.list_tables()["TableNames"] == ["src"]


TRIMMED_STREAM = """
import ferry.dynamo.stream as stream
from botocore.exceptions import ClientError

real_shard_iterator = stream.shard_iterator

class TrimmedStream:  # what DynamoDB Streams answers once the records after a checkpoint are gone
    def get_shard_iterator(self, **request):
        raise ClientError({"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}}, "GetShardIterator")

stream.shard_iterator = lambda client, arn, shard, after: real_shard_iterator(TrimmedStream(), arn, shard, after)
from flows.migrate_table import migrate_table
migrate_table(source="src", target="dst", create_target=True, segments=1)
"""


def test_the_catch_up_gate_fails_at_once_with_the_pollers_error_when_the_poller_dies_first(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(20))

    started = time.monotonic()
    run = run_ferry.python(TRIMMED_STREAM, timeout=120)  # before the fix, the gate waited 3,600 s

    assert run.returncode != 0
    assert "CannotContinue" in run.stderr and "have expired" in run.stderr, run.stderr[-3000:]
    assert time.monotonic() - started < 120


TWO_RUNS_IN_ONE_PROCESS = """
import json, boto3
from flows.migrate_table import migrate_table
first = migrate_table(source="src", target="dst", create_target=True, segments=1)
dynamodb = boto3.client("dynamodb")
for n in range(5):
    dynamodb.put_item(TableName="src", Item={"pk": {"S": f"after-first-run-{n}"}})
second = migrate_table(source="src", target="dst")
print(json.dumps({"first": first.verified, "second": second.verified, "replayed": second.stream_records}))
"""


def test_a_second_run_in_the_same_process_gets_a_live_sync_of_its_own(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(20))

    run = run_ferry.python(TWO_RUNS_IN_ONE_PROCESS, timeout=240)

    assert run.returncode == 0, run.stderr[-3000:]
    # Before the fix the second run's poller found the first run's `stop` set and applied nothing.
    assert run.json == {"first": True, "second": True, "replayed": 5}
    assert len(scan_all(dynamodb, "dst")) == 25


def test_the_lambda_writes_the_target_in_the_targets_region_and_endpoint(dynamodb, monkeypatch):
    target = boto3.client("dynamodb", region_name="eu-west-1")
    create_table(target, "dst")  # the same name as nothing in the source's region
    monkeypatch.setenv("TARGET_REGION", "eu-west-1")
    monkeypatch.setenv("TARGET_ENDPOINT_URL", os.environ["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # where the function runs: beside the source

    client = dynamo_handler.target_client()

    assert client.meta.region_name == "eu-west-1" and client.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    assert client.list_tables()["TableNames"] == ["dst"]
    assert "dst" not in dynamodb.list_tables()["TableNames"]  # before, the Lambda wrote the source's region


def test_one_applier_per_pair_a_second_poller_is_refused_until_the_first_stops_or_its_lease_lapses(dynamodb,
                                                                                                 run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(20))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    env = {**run_ferry.env(), "FERRY_LEASE_SECONDS": "6"}
    first = subprocess.Popen([FERRY, "sync", "table", "src", "dst", "--json"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    lease = {"migration": {"S": MIGRATION}, "part": {"S": "lease"}}
    deadline = time.monotonic() + 60
    while "Item" not in dynamodb.get_item(TableName="ferry-state", Key=lease, ConsistentRead=True):
        assert first.poll() is None and time.monotonic() < deadline, "the first poller never took the lease"
        time.sleep(0.1)

    second = run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json", env=env)
    assert second.returncode == 2 and "already running" in second.stderr, second.stderr  # before any write
    beside = run_ferry("table", "src", "dst", "--json", env=env)  # a migration run beside it: refused too
    assert beside.returncode == 2 and "already running" in beside.stderr, beside.stderr

    # a poller on another machine, killed: its lease holds until it lapses
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    lapses = int(time.time()) + 12
    dynamodb.update_item(TableName="ferry-state", Key=lease, UpdateExpression="SET holder = :h, expires_at = :t",
                         ExpressionAttributeValues={":h": {"S": "elsewhere/1/run"}, ":t": {"N": str(lapses)}})
    assert run_ferry("sync", "table", "src", "dst", "--until-idle", "1", env=env).returncode == 2
    time.sleep(max(0.0, lapses + 1 - time.time()))
    third = run_ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json", env=env)
    assert third.returncode == 0, third.stderr
    assert "Item" not in dynamodb.get_item(TableName="ferry-state", Key=lease, ConsistentRead=True)  # given back


class RefusingTarget:
    """A target client whose writes fail with `code`, as AWS answers them."""

    def __init__(self, client, code: str):
        self.client, self.code = client, code

    def put_item(self, **request):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": self.code, "Message": "refused"}}, "PutItem")

    batch_write_item = delete_item = put_item

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException", "ExpiredTokenException",
                                  "UnrecognizedClientException"])
def test_an_error_about_every_item_stops_the_applier_instead_of_dead_lettering_the_stream(dynamodb, code):
    create_table(dynamodb, "src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    create_table(dynamodb, "dst")
    for n in range(3):
        dynamodb.put_item(TableName="src", Item={"pk": {"S": f"k{n}"}})
    records = stream_records(dynamodb, "src")

    with pytest.raises(Exception) as raised:  # the poller stops (exit 3); the Lambda fails the batch
        apply_stream_records(RefusingTarget(dynamodb, code), "dst", records, guarded=True)
    assert raised.value.response["Error"]["Code"] == code
    with pytest.raises(Exception):
        handle(lambda_event(records), RefusingTarget(dynamodb, code), "dst")

    # an error about one item's content is that item's: the others are still applied
    poisoned = apply_stream_records(RefusingTarget(dynamodb, "ValidationException"), "dst", records, guarded=True)
    assert len(poisoned.rejected) == 3 and poisoned.rejected[0].error == "ValidationException"
