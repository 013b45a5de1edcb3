"""The cutover's engine against the moto server: the switch window's rule for tables and buckets,
parameters written once per cutover, and two runs of one plan refused."""

from __future__ import annotations

import time

import boto3
import pytest

from ferry import cutover
from ferry.errors import BadInput, CannotContinue
from ferry.state import StateStore
from lambdas.dynamo_apply import apply_stream_records
from lambdas.s3_apply import sync_key
from tables import create_table


def item(key: str, value: str) -> dict:
    return {"pk": {"S": key}, "v": {"S": value}, "tags": {"SS": ["b", "a"]}}


def record(event: str, key: str, old: dict | None, new: dict | None, sequence: int) -> dict:
    change = {"Keys": {"pk": {"S": key}}, "SequenceNumber": f"{sequence:021d}"}
    if old is not None:
        change["OldImage"] = old
    if new is not None:
        change["NewImage"] = new
    return {"eventName": event, "dynamodb": change}


def test_in_the_switch_window_a_change_lands_only_where_the_target_still_holds_its_old_state(dynamodb):
    create_table(dynamodb, "new-home")
    for key, value in (("same", "v0"), ("service-wrote", "v9"), ("inserted-by-service", "s"), ("to-delete", "v0"),
                       ("deleted-then-rewritten", "s2")):
        dynamodb.put_item(TableName="new-home", Item={**item(key, value), "tags": {"SS": ["a", "b"]}})
    records = [
        record("MODIFY", "same", item("same", "v0"), item("same", "v1"), 1),
        record("MODIFY", "service-wrote", item("service-wrote", "v0"), item("service-wrote", "v1"), 2),
        record("INSERT", "inserted-by-service", None, item("inserted-by-service", "old-home"), 3),
        record("REMOVE", "to-delete", item("to-delete", "v0"), None, 4),
        record("INSERT", "fresh", None, item("fresh", "f"), 5),
        record("REMOVE", "deleted-then-rewritten", item("deleted-then-rewritten", "v0"), None, 6),
        record("MODIFY", "same", item("same", "v1"), item("same", "v2"), 7),  # a second change of one key
    ]
    result = apply_stream_records(dynamodb, "new-home", records, guarded=False, only_over_unchanged=True)

    def value(key: str) -> str | None:
        found = dynamodb.get_item(TableName="new-home", Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
        return found["v"]["S"] if found else None

    assert value("same") == "v2"  # unchanged since: both changes applied (sets compared as sets)
    assert value("service-wrote") == "v9" and value("inserted-by-service") == "s"  # the service's writes kept
    assert value("to-delete") is None and value("fresh") == "f"
    assert value("deleted-then-rewritten") == "s2"
    assert result.kept == 3
    # outside the window the same records are applied as they come (the old behaviour)
    assert apply_stream_records(dynamodb, "new-home", records[1:2], guarded=False).kept == 0
    assert value("service-wrote") == "v1"


def test_in_the_switch_window_a_bucket_keeps_the_services_newer_objects(aws):
    s3 = boto3.client("s3")
    for bucket in ("old-home", "new-home"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="old-home", Key="older-in-old", Body=b"old")
    s3.put_object(Bucket="new-home", Key="deleted-in-old-kept", Body=b"service")  # before the switch: forward's copy
    time.sleep(1.1)  # S3 keeps LastModified to the second
    switch = time.time()
    time.sleep(1.1)
    s3.put_object(Bucket="new-home", Key="older-in-old", Body=b"service, after the switch")
    s3.put_object(Bucket="new-home", Key="written-after-switch", Body=b"service")
    s3.put_object(Bucket="old-home", Key="newer-in-old", Body=b"late writer")

    assert sync_key(s3, "old-home", "new-home", "older-in-old", keep_target_changes_since=switch) == "kept"
    assert sync_key(s3, "old-home", "new-home", "written-after-switch", keep_target_changes_since=switch) == "kept"
    assert sync_key(s3, "old-home", "new-home", "deleted-in-old-kept", keep_target_changes_since=switch) == "deleted"
    assert sync_key(s3, "old-home", "new-home", "newer-in-old", keep_target_changes_since=switch) == "copied"
    assert s3.get_object(Bucket="new-home", Key="older-in-old")["Body"].read() == b"service, after the switch"
    assert sync_key(s3, "old-home", "new-home", "older-in-old") == "copied"  # outside the window: the source wins


def test_each_parameter_is_written_once_per_cutover_and_restored_once(dynamodb):
    ssm = boto3.client("ssm")
    state = StateStore(dynamodb, "ferry-state")
    state.ensure_table()
    ssm.put_parameter(Name="/svc/table", Value="orders", Type="String")
    for _ in range(3):  # reruns
        assert cutover.switch_parameter(ssm, state, "plan:p", 1, "/svc/table", "orders-v2") == {
            "old": "orders", "new": "orders-v2"}
        assert cutover.switch_parameter(ssm, state, "plan:p", 1, "/svc/new", "x") == {"old": None, "new": "x"}
    assert ssm.get_parameter(Name="/svc/table")["Parameter"]["Version"] == 2
    for _ in range(2):
        assert cutover.restore_parameter(ssm, state, "plan:p", 1, "/svc/table") == (True, "orders")
        assert cutover.restore_parameter(ssm, state, "plan:p", 1, "/svc/new") == (True, None)
    assert ssm.get_parameter(Name="/svc/table")["Parameter"] == {**ssm.get_parameter(Name="/svc/table")["Parameter"],
                                                                 "Value": "orders", "Version": 3}
    assert ssm.describe_parameters()["Parameters"][0]["Name"] == "/svc/table"  # /svc/new did not exist: deleted
    # the next cutover (epoch 2) records the values of its own moment, not the first one's
    assert cutover.switch_parameter(ssm, state, "plan:p", 2, "/svc/table", "orders-v3")["old"] == "orders"
    assert ssm.get_parameter(Name="/svc/table")["Parameter"]["Value"] == "orders-v3"


def test_a_secure_string_parameter_is_refused_before_anything_is_written(aws):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/svc/secret", Value="s3cr3t", Type="SecureString")
    with pytest.raises(BadInput, match="SecureString"):
        cutover.check_parameters(ssm, ["/svc/absent", "/svc/secret"])


def test_two_runs_of_one_plan_cannot_both_record_a_step(dynamodb):
    state = StateStore(dynamodb, "ferry-state")
    state.ensure_table()
    first, second = cutover.read(state, "plan:p"), cutover.read(state, "plan:p")
    cutover.record(state, "plan:p", first, cutover.GATES_PASSED)
    with pytest.raises(CannotContinue, match="another cutover or rollback"):
        cutover.record(state, "plan:p", second, cutover.GATES_PASSED)
    cutover.record(state, "plan:p", first, cutover.APPROVED)  # the run that read the latest goes on
    assert cutover.read(state, "plan:p").steps == [cutover.GATES_PASSED, cutover.APPROVED]


def test_items_compare_by_type_tag_whatever_their_attributes_are_called():
    from lambdas.dynamo_apply import canonical

    a = {"pk": {"S": "k"}, "SS": {"S": "one"}, "m": {"M": {"NS": {"NS": ["2", "1"]}, "x": {"B": b"\x00"}}}}
    b = {"pk": {"S": "k"}, "SS": {"S": "two"}, "m": {"M": {"NS": {"NS": ["1", "2"]}, "x": {"B": b"\x00"}}}}
    assert canonical(a) != canonical(b)  # an attribute named SS is not a set
    assert canonical(a) == canonical({**a, "m": {"M": {"x": {"B": b"\x00"}, "NS": {"NS": ["1", "2"]}}}})
    assert canonical({"n": {"L": [{"S": "1"}]}}) != canonical({"n": {"L": [{"N": "1"}]}})


def test_the_switch_windows_write_is_refused_when_the_key_changed_after_it_was_read(dynamodb):
    from lambdas.write_rule import Change, apply_over_unchanged

    create_table(dynamodb, "new-home")
    dynamodb.put_item(TableName="new-home", Item=item("k", "service"))  # written between the read and the write
    key = {"pk": {"S": "k"}}
    assert apply_over_unchanged(dynamodb, "new-home", Change(key, "1", item("k", "old-home")), item("k", "v0")) is False
    assert apply_over_unchanged(dynamodb, "new-home", Change(key, "2", None), item("k", "v0")) is False
    assert apply_over_unchanged(dynamodb, "new-home", Change({"pk": {"S": "j"}}, "3", item("j", "x")), None) is True
    assert apply_over_unchanged(dynamodb, "new-home", Change({"pk": {"S": "j"}}, "4", item("j", "y")), None) is False
    assert dynamodb.get_item(TableName="new-home", Key=key)["Item"]["v"] == {"S": "service"}
    assert apply_over_unchanged(dynamodb, "new-home", Change(key, "5", None), item("k", "service")) is True


def test_a_cutover_refuses_lambda_synced_resources_and_streams_without_old_images(dynamodb):
    from ferry.plan import Plan

    create_table(dynamodb, "orders")
    create_table(dynamodb, "orders-v2")
    dynamodb.update_table(TableName="orders", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    plan = Plan(name="p", tables=[{"source": "orders", "target": "orders-v2"}])
    with pytest.raises(BadInput, match="NEW_IMAGE: a cutover needs NEW_AND_OLD_IMAGES"):
        cutover.check_ready(plan, lambda side: dynamodb)
    lambda_plan = Plan(name="p", tables=[{"source": "orders", "target": "orders-v2", "live_sync": "lambda"}])
    with pytest.raises(BadInput, match="live-synced by a Lambda"):
        cutover.check_ready(lambda_plan, lambda side: dynamodb)
