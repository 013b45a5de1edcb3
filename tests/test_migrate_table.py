"""`ferry table` end to end: a real subprocess, a moto server over HTTP, a Prefect server."""

from __future__ import annotations

import time

import pytest

from ferry.config import AwsSide, TableJob
from tables import by_key, create_table, put_items, scan_all, simple_items

ALL_BYTES = bytes(range(256))


def every_type_items(count: int) -> list[dict]:
    """Items covering every attribute type, with values that lossy conversions get wrong."""
    items = []
    for i in range(count):
        items.append({
            "pk": {"S": f"user#{i:05d} ü ✓"},
            "sk": {"N": str(10**37 + i)},  # 38 significant digits: beyond float and Decimal's default
            "s": {"S": "héllo\n\t\"quoted\" " + "x" * (i % 50)},
            "empty": {"S": ""},
            "n_big": {"N": "-12345678901234567890123456789012345678"},
            "n_small": {"N": "0.000000000000000000000000000000000000001"},
            "n_exp": {"N": "1E+125"},
            "b": {"B": ALL_BYTES[i % 256:] + ALL_BYTES[: i % 256]},
            "b_empty": {"B": b""},
            "ss": {"SS": ["b", "a", f"c{i}"]},
            "ns": {"NS": ["1", "2.5", str(10**37 + 7)]},
            "bs": {"BS": [b"\x00", b"\xff\xfe", bytes([i % 256])]},
            "bool_t": {"BOOL": True},
            "bool_f": {"BOOL": False},
            "null": {"NULL": True},
            "list": {"L": [{"S": "a"}, {"N": "1.50"}, {"B": b"\x01\x02"}, {"L": [{"NULL": True}]}, {"M": {}}]},
            "map": {"M": {"nested": {"M": {"deeper": {"SS": ["x", "y"]}, "n": {"N": "3.14159265358979323846264338327950288"}}},
                          "l": {"L": []}, "bs": {"BS": [b"\x10"]}}},
        })
    return items


def test_every_attribute_type_round_trips_byte_exact_over_several_pages(dynamodb, run_ferry):
    create_table(dynamodb, "people", ("pk", "S"), ("sk", "N"))
    source_items = every_type_items(300)
    put_items(dynamodb, "people", source_items)

    result = run_ferry("table", "people", "people-v2", "--create-target", "--segments", "3",
                       "--page-size", "40", "--json")

    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["verified"] is True
    assert summary["source_items"] == summary["target_items"] == summary["copied"] == 300
    assert summary["resumed"] is False
    copied = by_key(scan_all(dynamodb, "people-v2"), "pk", "sk")
    original = by_key(scan_all(dynamodb, "people"), "pk", "sk")
    assert copied == original  # raw AttributeValues: bytes, number strings and nesting exactly equal
    assert len(copied) == 300


def test_create_target_clones_keys_indexes_capacity_ttl_and_tags(dynamodb, run_ferry):
    create_table(
        dynamodb, "orders", ("pk", "S"), ("sk", "S"),
        ExtraAttributes=[{"AttributeName": "customer", "AttributeType": "S"},
                         {"AttributeName": "placed", "AttributeType": "N"}],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
        GlobalSecondaryIndexes=[{
            "IndexName": "by-customer",
            "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}, {"AttributeName": "placed", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]},
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 2},
        }],
        LocalSecondaryIndexes=[{
            "IndexName": "by-placed",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "placed", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
        Tags=[{"Key": "team", "Value": "payments"}, {"Key": "env", "Value": "prod"}],
    )
    dynamodb.update_time_to_live(TableName="orders", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    put_items(dynamodb, "orders", [{"pk": {"S": f"o{i}"}, "sk": {"S": "v1"}, "customer": {"S": f"c{i % 7}"},
                                    "placed": {"N": str(i)}, "total": {"N": "9.99"}} for i in range(50)])

    result = run_ferry("table", "orders", "orders-v2", "--create-target", "--json")

    assert result.returncode == 0, result.stderr
    source = dynamodb.describe_table(TableName="orders")["Table"]
    target = dynamodb.describe_table(TableName="orders-v2")["Table"]
    assert target["KeySchema"] == source["KeySchema"]
    assert sorted(target["AttributeDefinitions"], key=str) == sorted(source["AttributeDefinitions"], key=str)
    assert target["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert target["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    [gsi] = target["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by-customer"
    assert gsi["KeySchema"] == source["GlobalSecondaryIndexes"][0]["KeySchema"]
    assert gsi["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]}
    assert gsi["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    [lsi] = target["LocalSecondaryIndexes"]
    assert (lsi["IndexName"], lsi["Projection"]["ProjectionType"]) == ("by-placed", "KEYS_ONLY")
    ttl = dynamodb.describe_time_to_live(TableName="orders-v2")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")
    tags = dynamodb.list_tags_of_resource(ResourceArn=target["TableArn"])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "payments")]
    assert "StreamSpecification" not in target or not target["StreamSpecification"].get("StreamEnabled")
    # the GSI works on the copied items
    hits = dynamodb.query(TableName="orders-v2", IndexName="by-customer",
                          KeyConditionExpression="customer = :c", ExpressionAttributeValues={":c": {"S": "c3"}})
    assert hits["Count"] == len([i for i in range(50) if i % 7 == 3])


def test_rerun_of_a_finished_migration_resyncs_without_copying_again(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(500))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "new"}, "n": {"N": "1"}})
    dynamodb.delete_item(TableName="src", Key={"pk": {"S": "k0000001"}})

    again = run_ferry("table", "src", "dst", "--json")

    assert again.returncode == 0, again.stderr
    assert again.json["resumed"] is True
    assert again.json["copied"] == 0  # no page copied twice; the changes came from the stream
    assert again.json["verified"] is True
    assert again.json["target_items"] == 500


def test_verify_reports_a_difference_with_exit_1(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    create_table(dynamodb, "dst")
    items = simple_items(200)
    put_items(dynamodb, "src", items)
    put_items(dynamodb, "dst", items)

    same = run_ferry("verify", "table", "src", "dst", "--json")
    assert same.returncode == 0, same.stderr
    assert same.json["equal"] is True
    assert same.json["source_checksum"] == same.json["target_checksum"]

    dynamodb.put_item(TableName="dst", Item={**items[5], "n": {"N": "5.000001"}})
    different = run_ferry("verify", "table", "src", "dst", "--json")
    assert different.returncode == 1
    assert different.json["equal"] is False
    assert different.json["source_items"] == different.json["target_items"] == 200
    assert different.json["source_checksum"] != different.json["target_checksum"]


def test_status_shows_phase_and_per_segment_progress(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(300))
    assert run_ferry("table", "src", "dst", "--create-target", "--segments", "4", "--json").returncode == 0

    status = run_ferry("status", "--json")
    assert status.returncode == 0, status.stderr
    [migration] = status.json["migrations"]
    assert (migration["source"], migration["target"], migration["phase"]) == ("src", "dst", "done")
    assert migration["copied"] == 300 and migration["segments_done"] == 4
    assert sum(s["items"] for s in migration["segment_progress"]) == 300

    one = run_ferry("status", "src", "dst")
    assert one.returncode == 0 and "segment" in one.stdout and "done" in one.stdout
    missing = run_ferry("status", "src", "elsewhere")
    assert missing.returncode == 2 and "no migration of src into elsewhere" in missing.stderr


@pytest.mark.parametrize("case", [
    "missing-source", "missing-target", "key-mismatch", "nonempty-target", "same-table", "same-table-by-region",
    "bad-segments", "keys-only-stream", "unknown-option", "bad-table-name", "bad-write-limit",
    "capacity-share-of-on-demand", "two-limits-on-one-side", "unknown-live-sync", "unknown-region",
    "unreachable-endpoint", "bad-retry-delays",
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(dynamodb, run_ferry, case):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(20))
    args = ["table", "src", "dst"]
    if case == "missing-source":
        args = ["table", "nosuch", "dst", "--create-target"]
    elif case == "key-mismatch":
        create_table(dynamodb, "dst", ("id", "N"))
    elif case == "nonempty-target":
        create_table(dynamodb, "dst")
        put_items(dynamodb, "dst", simple_items(1, prefix="other"))
    elif case == "same-table":
        args = ["table", "src", "src"]
    elif case == "same-table-by-region":  # us-east-1 is the default region: the same table twice
        args = ["table", "src", "src", "--target-region", "us-east-1"]
    elif case == "bad-segments":
        args += ["--create-target", "--segments", "0"]
    elif case == "keys-only-stream":
        dynamodb.update_table(TableName="src", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        args += ["--create-target"]
    elif case == "unknown-option":
        args += ["--create-targets"]
    elif case == "bad-table-name":
        args = ["table", "src", "a b"]
    elif case == "bad-write-limit":
        args += ["--create-target", "--max-write-units", "-5"]
    elif case == "capacity-share-of-on-demand":  # src is on-demand, and so would its clone be
        args += ["--create-target", "--write-capacity-percent", "50"]
    elif case == "two-limits-on-one-side":
        args += ["--create-target", "--max-read-units", "100", "--read-capacity-percent", "20"]
    elif case == "unknown-live-sync":
        args += ["--create-target", "--live-sync", "lambada"]
    elif case == "unknown-region":
        args += ["--create-target", "--target-region", "mars-north-1"]
    elif case == "unreachable-endpoint":
        args += ["--create-target", "--endpoint-url", "http://127.0.0.1:9"]  # the discard port: nothing listens
    elif case == "bad-retry-delays":
        args += ["--create-target"]
    tables_before = sorted(dynamodb.list_tables()["TableNames"])
    stream_before = dynamodb.describe_table(TableName="src")["Table"].get("StreamSpecification")

    result = run_ferry(*args, env={"AWS_MAX_ATTEMPTS": "2"} if case == "unreachable-endpoint" else
                       {"FERRY_RETRY_DELAYS": "inf,0,0"} if case == "bad-retry-delays" else None)

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ferry: error: "), result.stderr
    if case.startswith("same-table"):
        assert "same table" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(dynamodb.list_tables()["TableNames"]) == tables_before  # no target, no state table
    assert dynamodb.describe_table(TableName="src")["Table"].get("StreamSpecification") == stream_before
    if "dst" in tables_before:
        assert len(scan_all(dynamodb, "dst")) == (1 if case == "nonempty-target" else 0)


def test_allow_nonempty_copies_into_a_target_that_has_items(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    create_table(dynamodb, "dst")
    put_items(dynamodb, "src", simple_items(50))
    put_items(dynamodb, "dst", simple_items(10))  # the same keys, as from an earlier hand-made copy

    result = run_ferry("table", "src", "dst", "--allow-nonempty", "--json")

    assert result.returncode == 0, result.stderr
    assert result.json["verified"] is True and result.json["target_items"] == 50


def test_naming_the_default_region_explicitly_finds_the_same_migration(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(30))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0

    # us-east-1 is this environment's default region: the same migration, so a rerun resumes it
    again = run_ferry("table", "src", "dst", "--source-region", "us-east-1", "--target-region", "us-east-1", "--json")

    assert again.returncode == 0, again.stderr
    assert again.json["resumed"] is True and again.json["copied"] == 0
    implicit = TableJob(source="src", target="dst").migration_id
    assert TableJob(source="src", target="dst", source_aws=AwsSide(region="us-east-1")).migration_id == implicit
    assert TableJob(source="src", target="dst", target_aws=AwsSide(region="eu-west-1")).migration_id == \
        "table:us-east-1/src>eu-west-1/dst"


def test_a_clone_interrupted_before_ttl_backups_and_protection_is_completed_by_the_rerun(dynamodb, run_ferry):
    create_table(dynamodb, "src", DeletionProtectionEnabled=True)
    dynamodb.update_time_to_live(TableName="src", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    dynamodb.update_continuous_backups(TableName="src",
                                       PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    put_items(dynamodb, "src", simple_items(10))
    create_table(dynamodb, "dst")  # as a run killed right after CreateTable left it

    result = run_ferry("table", "src", "dst", "--create-target", "--json")

    assert result.returncode == 0, result.stderr
    ttl = dynamodb.describe_time_to_live(TableName="dst")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")
    backups = dynamodb.describe_continuous_backups(TableName="dst")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert dynamodb.describe_table(TableName="dst")["Table"]["DeletionProtectionEnabled"] is True


def test_a_target_deleted_and_created_again_is_not_resumed(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(40))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    dynamodb.delete_table(TableName="dst")
    create_table(dynamodb, "dst")  # empty, the same name: checkpoints say 40 items are there

    again = run_ferry("table", "src", "dst", "--no-verify", "--json")

    assert again.returncode == 2, again.stdout + again.stderr
    assert "deleted and created again" in again.stderr and "--restart" in again.stderr
    restarted = run_ferry("table", "src", "dst", "--restart", "--json")
    assert restarted.returncode == 0 and restarted.json["copied"] == 40, restarted.stderr


def test_restart_first_clears_the_versions_an_earlier_run_left_so_its_backfill_skips_no_key(dynamodb, run_ferry):
    from ferry.state import StateStore
    from lambdas.write_rule import VERSION, version
    from tables import MIGRATION

    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(30))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    # As a run killed while its live sync was guarded leaves it: a versioned, now stale, item ...
    stale = {"pk": {"S": "k0000003"}, "v": {"S": "stale"}, VERSION: version("9" * 30)}
    dynamodb.put_item(TableName="dst", Item=stale)
    StateStore(dynamodb, "ferry-state").note_markers(MIGRATION)  # ... and the note that markers may exist

    restarted = run_ferry("table", "src", "dst", "--restart", "--json")

    assert restarted.returncode == 0 and restarted.json["verified"] is True, restarted.stderr
    item = dynamodb.get_item(TableName="dst", Key={"pk": {"S": "k0000003"}}, ConsistentRead=True)["Item"]
    assert item == dynamodb.get_item(TableName="src", Key={"pk": {"S": "k0000003"}})["Item"]


def test_a_restart_ends_exact_even_where_a_delete_was_lost_in_a_gap(dynamodb, run_ferry):
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(30))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    # a delete the stream no longer holds (a pause past its retention): the target still has the item
    dynamodb.put_item(TableName="dst", Item={"pk": {"S": "deleted-in-the-gap"}, "v": {"S": "1"}})

    restarted = run_ferry("table", "src", "dst", "--restart", "--json")

    assert restarted.returncode == 0 and restarted.json["verified"] is True, restarted.stderr
    assert "Item" not in dynamodb.get_item(TableName="dst", Key={"pk": {"S": "deleted-in-the-gap"}}, ConsistentRead=True)


def test_a_run_resumed_after_the_poller_was_away_longer_than_the_streams_retention_names_the_gap(dynamodb, run_ferry):
    from ferry.state import StateStore
    from tables import MIGRATION

    create_table(dynamodb, "src")
    put_items(dynamodb, "src", simple_items(30))
    assert run_ferry("table", "src", "dst", "--create-target", "--json").returncode == 0
    state = StateStore(dynamodb, "ferry-state")
    assert state.load(MIGRATION).read_through is not None  # the poller recorded how far it had applied
    state.save_read_through(MIGRATION, time.time() - 25 * 3600)  # as if paused for a day and an hour since

    resumed = run_ferry("table", "src", "dst", "--json")

    assert resumed.returncode == 2 and "24-hour retention" in resumed.stderr and "--restart" in resumed.stderr
    assert len(resumed.stderr.strip().splitlines()) == 1
    assert run_ferry("table", "src", "dst", "--restart", "--json").returncode == 0  # the remedy works
    state.save_read_through(MIGRATION, time.time() - 25 * 3600)
    synced = run_ferry("sync", "table", "src", "dst", "--until-idle", "1")
    assert synced.returncode == 2 and "24-hour retention" in synced.stderr  # the same for `ferry sync table`
