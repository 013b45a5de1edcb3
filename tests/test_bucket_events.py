"""How a bucket's events reach Ferry beside existing consumers (ferry/s3/routes.py), and what live sync
applies: metadata, tag and ACL changes; events still in transit; the lag people watch."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from ferry.s3 import events, routes
from interleave import RunsFirst
from lambdas.s3_apply import changes_in_message, sync_key, sync_tags

ALL_CREATED = {"Id": "orders-consumer", "Events": ["s3:ObjectCreated:*"]}


def queue(sqs, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def received(sqs, url: str) -> list[dict]:
    """Every message waiting in a queue (deleted as read)."""
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                                                         for n, m in enumerate(messages)])
    return bodies


def drain(sqs, s3, url: str, source: str, target: str) -> dict:
    """What the poller does (tasks/s3.py drain_bucket_events), without Prefect."""
    def apply(body: str) -> None:
        for bucket, key, kind in changes_in_message(body):
            if bucket == source:
                sync_key(s3, source, target, key, kind=kind)
    return events.drain_queue(sqs, url, events.one_by_one(apply), idle_seconds=0.5)


def eventbridge_delivers(s3, sqs, bucket: str) -> bool:
    """Whether the bucket's EventBridge delivery is on (moto's get call does not say): a probe rule
    of someone else's sees an object written now, or not."""
    probe_url, probe_arn = queue(sqs, "probe")
    bus = boto3.client("events")
    bus.put_rule(Name="probe", EventPattern=json.dumps({"source": ["aws.s3"]}), State="ENABLED")
    bus.put_targets(Rule="probe", Targets=[{"Id": "q", "Arn": probe_arn}])
    s3.put_object(Bucket=bucket, Key="probe", Body=b"p")
    seen = bool(received(sqs, probe_url))
    bus.remove_targets(Rule="probe", Ids=["q"])
    bus.delete_rule(Name="probe")
    sqs.delete_queue(QueueUrl=probe_url)
    s3.delete_object(Bucket=bucket, Key="probe")
    return seen


def test_overlap_is_judged_as_s3_judges_it():
    def entry(events_, prefix="", suffix=""):
        rules = [{"Name": "prefix", "Value": prefix}] * bool(prefix) + [{"Name": "Suffix", "Value": suffix}] * bool(suffix)
        return {"Events": events_, **({"Filter": {"Key": {"FilterRules": rules}}} if rules else {})}

    ours = entry(routes.EVENTS)
    assert routes.overlap(entry(["s3:ObjectCreated:Put"]), ours)  # a wildcard covers its family
    assert routes.overlap(entry(["s3:ObjectTagging:Delete"]), ours)
    assert not routes.overlap(entry(["s3:ObjectRestore:*", "s3:Replication:*"]), ours)
    assert routes.overlap(entry(["s3:ObjectCreated:*"], prefix="logs/"), entry(routes.EVENTS, prefix="logs/2026/"))
    assert not routes.overlap(entry(["s3:ObjectCreated:*"], prefix="logs/"), entry(routes.EVENTS, prefix="media/"))
    assert routes.overlap(entry(["s3:ObjectCreated:*"], suffix=".jpg"), ours)  # a missing filter matches every key
    assert not routes.overlap(entry(["s3:ObjectCreated:*"], prefix="a/", suffix=".jpg"),
                              entry(routes.EVENTS, prefix="a/", suffix=".png"))


def test_two_migrations_of_one_source_each_have_their_own_route_and_both_stay_live(s3):
    sqs, bus = boto3.client("sqs"), boto3.client("events")
    s3.create_bucket(Bucket="dst-two")
    first_url, first_arn = queue(sqs, events.queue_names("src-bucket", "dst-bucket")[0])
    legacy = {"Id": routes.LEGACY_ID, "QueueArn": first_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
    s3.put_bucket_notification_configuration(Bucket="src-bucket",  # as an earlier Ferry routed it
                                             NotificationConfiguration={"QueueConfigurations": [legacy]})

    _, _, first = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "")
    second_url, second_arn, second = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-two", "")

    assert (first.way, second.way) == ("notification", "eventbridge")  # the first's entry overlaps the second's
    assert second.turned_on_eventbridge
    [entry] = s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"]
    assert entry["Id"] == "ferry-sync-src-bucket-dst-bucket" and sorted(entry["Events"]) == sorted(routes.EVENTS)
    # a rerun of either finds its route in place and leaves the other's alone
    assert not events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "")[2].added
    assert not events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-two", "")[2].added
    received(sqs, first_url), received(sqs, second_url)  # moto's test events

    s3.put_object(Bucket="src-bucket", Key="a b.txt", Body=b"for both")  # moto adds a tagging event to a put
    assert drain(sqs, s3, first_url, "src-bucket", "dst-bucket")["messages"] >= 1
    assert drain(sqs, s3, second_url, "src-bucket", "dst-two")["messages"] >= 1
    for target in ("dst-bucket", "dst-two"):
        assert s3.get_object(Bucket=target, Key="a b.txt")["Body"].read() == b"for both"

    done = routes.unroute(s3, bus, "src-bucket", "dst-bucket", first_arn)  # the first migration ends
    assert done.removed == ["notification entry of bucket src-bucket"] and done.kept == []
    s3.put_object(Bucket="src-bucket", Key="later", Body=b"second only")
    assert received(sqs, first_url) == [] and drain(sqs, s3, second_url, "src-bucket", "dst-two")["messages"] >= 1
    assert s3.get_object(Bucket="dst-two", Key="later")["Body"].read() == b"second only"

    done = routes.unroute(s3, bus, "src-bucket", "dst-two", second_arn)
    assert done.removed == ["EventBridge rule ferry-sync-src-bucket-dst-two",
                            "EventBridge delivery of bucket src-bucket (Ferry had turned it on)"]
    assert routes.unroute(s3, bus, "src-bucket", "dst-two", second_arn).removed == []  # a rerun: nothing left
    assert not eventbridge_delivers(s3, sqs, "src-bucket")
    assert s3.get_bucket_notification_configuration(Bucket="src-bucket").get("QueueConfigurations", []) == []


def acls_enabled(s3, *buckets: str) -> None:
    for bucket in buckets:
        s3.delete_bucket_ownership_controls(Bucket=bucket)


def test_metadata_tag_and_acl_changes_reach_the_target(s3):
    sqs, bus = boto3.client("sqs"), boto3.client("events")
    acls_enabled(s3, "src-bucket", "dst-bucket")
    s3.put_object(Bucket="src-bucket", Key="doc", Body=b"same bytes", ContentType="text/plain",
                  Metadata={"owner": "ana"}, Tagging="team=web")
    url, _, _ = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "")
    assert sync_key(s3, "src-bucket", "dst-bucket", "doc") == "copied"
    received(sqs, url)

    s3.copy_object(Bucket="src-bucket", Key="doc", CopySource={"Bucket": "src-bucket", "Key": "doc"},
                   MetadataDirective="REPLACE", ContentType="text/markdown", Metadata={"owner": "rui"})  # same ETag
    s3.put_object_tagging(Bucket="src-bucket", Key="doc", Tagging={"TagSet": [{"Key": "team", "Value": "data"},
                                                                              {"Key": "pii", "Value": "no"}]})
    s3.put_object_acl(Bucket="src-bucket", Key="doc", ACL="public-read")
    drained = drain(sqs, s3, url, "src-bucket", "dst-bucket")

    assert drained["messages"] >= 3 and drained["failed"] == 0
    source, target = (s3.head_object(Bucket=b, Key="doc") for b in ("src-bucket", "dst-bucket"))
    assert (target["ContentType"], target["Metadata"].get("owner")) == ("text/markdown", "rui")
    tags = [s3.get_object_tagging(Bucket=b, Key="doc")["TagSet"] for b in ("src-bucket", "dst-bucket")]
    assert sorted(map(str, tags[0])) == sorted(map(str, tags[1])) and len(tags[1]) == 2
    public = [g for g in s3.get_object_acl(Bucket="dst-bucket", Key="doc")["Grants"]
              if g["Grantee"].get("URI", "").endswith("AllUsers")]
    assert [g["Permission"] for g in public] == ["READ"]

    s3.delete_object_tagging(Bucket="src-bucket", Key="doc")
    drain(sqs, s3, url, "src-bucket", "dst-bucket")
    assert s3.get_object_tagging(Bucket="dst-bucket", Key="doc")["TagSet"] == []
    assert source["ETag"] == target["ETag"]  # it was never copied for its metadata alone: nothing else differed


def test_deep_verification_finds_a_metadata_or_tag_change_no_event_brought(s3):
    from ferry.s3.verify import verify_buckets

    for key in ("meta", "tags", "same"):
        s3.put_object(Bucket="src-bucket", Key=key, Body=b"bytes", Metadata={"v": "1"}, Tagging="t=1")
        s3.copy_object(Bucket="dst-bucket", Key=key, CopySource={"Bucket": "src-bucket", "Key": key})
    s3.copy_object(Bucket="dst-bucket", Key="meta", CopySource={"Bucket": "dst-bucket", "Key": "meta"},
                   MetadataDirective="REPLACE", Metadata={"v": "stale"})
    s3.put_object_tagging(Bucket="dst-bucket", Key="tags", Tagging={"TagSet": [{"Key": "t", "Value": "stale"}]})

    assert verify_buckets(s3, s3, "src-bucket", "dst-bucket").equal  # the listings' ETags are equal
    deep = verify_buckets(s3, s3, "src-bucket", "dst-bucket", deep=True)
    assert deep.changed == ["meta", "tags"] and not deep.missing and not deep.extra


class ChangesTagsAfterFirstWrite:
    """An S3 client that, right after the first tag write reaches the target, changes the source's
    tags: the interleaving in which the tags read are already stale when written."""

    def __init__(self, client):
        self.client, self.ran = client, 0

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != "put_object_tagging":
            return attribute

        def writing(**kwargs):
            answer = attribute(**kwargs)
            if not self.ran and kwargs["Bucket"] == "dst-bucket":
                self.ran += 1
                self.client.put_object_tagging(Bucket="src-bucket", Key=kwargs["Key"],
                                               Tagging={"TagSet": [{"Key": "v", "Value": "2"}]})
            return answer
        return writing


def test_a_tag_set_changed_while_it_is_written_is_written_again(s3):
    s3.put_object(Bucket="src-bucket", Key="k", Body=b"x", Tagging="v=1")
    s3.put_object(Bucket="dst-bucket", Key="k", Body=b"x")
    racing = ChangesTagsAfterFirstWrite(s3)
    assert sync_tags(racing, "src-bucket", "dst-bucket", "k") is True
    assert racing.ran == 1
    assert s3.get_object_tagging(Bucket="dst-bucket", Key="k")["TagSet"] == [{"Key": "v", "Value": "2"}]


def test_the_catch_up_drain_waits_for_an_event_still_in_transit(aws, monkeypatch):
    """S3 delivers an event a moment after the change: one sent with a delay stands for it. Without
    the settle, the drain found the queue empty and ended, and the change waited for the next run."""
    sqs = boto3.client("sqs")
    url, _ = queue(sqs, "in-transit")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": []}), DelaySeconds=1)
    monkeypatch.setenv("FERRY_EVENT_SETTLE_SECONDS", "3")
    applied = []

    drained = events.drain_queue(sqs, url, events.one_by_one(applied.append), until_caught_up=True)

    assert drained["messages"] == 1 and len(applied) == 1


def test_appliers_leave_their_lag_on_the_queue_for_status(aws):
    from lambdas import s3_handler

    sqs = boto3.client("sqs")
    url, arn = queue(sqs, "lagging")
    assert events.recorded_lag(sqs, url) is None
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": []}))
    events.drain_queue(sqs, url, events.one_by_one(lambda body: time.sleep(0.3)), until_caught_up=True)
    lag, ago = events.recorded_lag(sqs, url)
    assert 0.3 <= lag < 30 and ago < 30

    s3_handler._recorded["at"] = 0.0  # the Lambda's own record, from its batch's SentTimestamp
    records = [{"messageId": "1", "body": json.dumps({"Records": []}), "eventSourceARN": arn,
                "attributes": {"SentTimestamp": str(int((time.time() - 42) * 1000))}}]
    assert s3_handler.handle({"Records": records}, boto3.client("s3"), "dst", sqs=sqs) == {"batchItemFailures": []}
    assert 42 <= events.recorded_lag(sqs, url)[0] < 60


def test_beside_an_existing_consumer_a_migration_goes_through_eventbridge_and_leaves_it_untouched(s3, run_ferry):
    """The issue's case: the service's own consumer takes s3:ObjectCreated:* for every key. `ferry
    bucket` (auto) routes through EventBridge; writes, deletes, metadata and tag changes during and
    after the run reach the target; the consumer's configuration, and its events, stay as they were,
    also once `ferry finish bucket` has removed Ferry's route."""
    sqs = boto3.client("sqs")
    consumer_url, consumer_arn = queue(sqs, "orders-consumer")
    mine = {"QueueConfigurations": [{**ALL_CREATED, "QueueArn": consumer_arn},
                                    {"Id": "restores", "QueueArn": consumer_arn, "Events": ["s3:ObjectRestore:*"]}]}
    s3.put_bucket_notification_configuration(Bucket="src-bucket", NotificationConfiguration=mine)
    before = s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"]
    for n in range(60):
        s3.put_object(Bucket="src-bucket", Key=f"k{n:03d}", Body=f"v{n}".encode(), Tagging="gen=1")
    stop, changes = threading.Event(), {"made": 0}

    def service():  # puts, deletes, metadata-only copies and tag changes, throughout the run
        client, n = boto3.client("s3"), 0
        while not stop.is_set():
            n += 1
            key = f"k{n % 60:03d}"
            try:
                if n % 4 == 0:
                    client.delete_object(Bucket="src-bucket", Key=key)
                elif n % 4 == 1:
                    client.put_object(Bucket="src-bucket", Key=key, Body=f"w{n}".encode())
                elif n % 4 == 2:
                    client.copy_object(Bucket="src-bucket", Key=key, CopySource={"Bucket": "src-bucket", "Key": key},
                                       MetadataDirective="REPLACE", Metadata={"rev": str(n)})
                else:
                    client.put_object_tagging(Bucket="src-bucket", Key=key,
                                              Tagging={"TagSet": [{"Key": "gen", "Value": str(n)}]})
                changes["made"] += 1
            except client.exceptions.ClientError:  # a copy or tag change of a key deleted just before
                pass
            time.sleep(0.02)

    writer = threading.Thread(target=service)
    writer.start()
    ran = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    stop.set()
    writer.join()
    assert ran.returncode in (0, 1), ran.stderr
    assert changes["made"] > 20  # the service really wrote during the run

    s3.copy_object(Bucket="src-bucket", Key="k001", CopySource={"Bucket": "src-bucket", "Key": "k001"},
                   MetadataDirective="REPLACE", Metadata={"after": "run"})  # and after it
    s3.put_object_tagging(Bucket="src-bucket", Key="k002", Tagging={"TagSet": [{"Key": "after", "Value": "run"}]})
    s3.delete_object(Bucket="src-bucket", Key="k003")
    s3.put_object(Bucket="src-bucket", Key="new after run", Body=b"n")
    assert run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2").returncode == 0
    status = run_ferry("status", "bucket", "src-bucket", "dst-bucket", "--json")
    assert status.returncode == 0 and status.json["events_via"] == "eventbridge"
    assert status.json["lag_seconds"] is not None and status.json["pending"] == 0
    deep = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--deep", "--json")
    assert deep.returncode == 0 and deep.json["equal"] is True, deep.stdout  # bytes, metadata and tags
    assert s3.head_object(Bucket="dst-bucket", Key="k001")["Metadata"] == {"after": "run"}
    assert s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"] == before
    created = [m for m in received(sqs, consumer_url) if m.get("Records")]
    assert len(created) >= changes["made"] // 4  # the consumer got its events all along

    finished = run_ferry("finish", "bucket", "src-bucket", "dst-bucket", "--json")
    assert finished.returncode == 0, finished.stderr
    assert "EventBridge rule ferry-sync-src-bucket-dst-bucket" in finished.json["removed"]
    assert "EventBridge delivery of bucket src-bucket (Ferry had turned it on)" in finished.json["removed"]
    assert s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"] == before
    assert not eventbridge_delivers(s3, sqs, "src-bucket")
    assert {u.rsplit("/", 1)[1] for u in sqs.list_queues()["QueueUrls"]} == {"orders-consumer"}  # Ferry's are gone
    received(sqs, consumer_url)  # up to now (the probe's object too)
    s3.put_object(Bucket="src-bucket", Key="still-theirs", Body=b"x")  # (turning EventBridge off is a put of the
    assert [m["Records"][0]["s3"]["object"]["key"]  # configuration: S3 sends its consumers an s3:TestEvent)
            for m in received(sqs, consumer_url) if "Records" in m] == ["still-theirs"]


def test_a_rerun_turns_eventbridge_delivery_back_on_that_a_killed_run_left_off(s3):
    """Killed after the pair's rule and before the bucket's configuration write (or delivery turned
    off under it since): the rerun sees the rule but not the delivery, and turns delivery on."""
    sqs, bus = boto3.client("sqs"), boto3.client("events")
    url, arn, _ = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "", mode="eventbridge")
    s3.put_bucket_notification_configuration(Bucket="src-bucket", NotificationConfiguration={})  # delivery off
    assert not eventbridge_delivers(s3, sqs, "src-bucket")

    events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "", mode="eventbridge")

    assert eventbridge_delivers(s3, sqs, "src-bucket")
    assert "EventBridge delivery of bucket src-bucket (Ferry had turned it on)" in \
        routes.unroute(s3, bus, "src-bucket", "dst-bucket", arn).removed


class CustomerWritesAfterFerry:
    """An S3 client whose first configuration write is followed at once by the customer's own write
    of the configuration as they had read it before: Ferry's entry is gone."""

    def __init__(self, client, theirs: dict):
        self.client, self.theirs, self.ran = client, theirs, 0

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != "put_bucket_notification_configuration":
            return attribute

        def writing(**kwargs):
            answer = attribute(**kwargs)
            if not self.ran:
                self.ran += 1
                attribute(Bucket=kwargs["Bucket"], NotificationConfiguration=self.theirs)
            return answer
        return writing


def test_a_configuration_write_another_writer_overwrote_is_made_again(s3):
    sqs = boto3.client("sqs")
    _, audit = queue(sqs, "audit")
    theirs = {"QueueConfigurations": [{"Id": "restores", "QueueArn": audit, "Events": ["s3:ObjectRestore:*"]}]}
    racing = CustomerWritesAfterFerry(s3, theirs)

    events.route_to_queue(sqs, racing, boto3.client("events"), "src-bucket", "dst-bucket", "")

    assert racing.ran == 1
    ids = {c["Id"] for c in s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"]}
    assert ids == {"restores", "ferry-sync-src-bucket-dst-bucket"}


def test_copies_carry_the_grants_where_the_source_buckets_acls_are_enabled(s3):
    from ferry.config import BucketJob
    from ferry.s3.copy import copy_objects
    from ferry.s3.preflight import copy_settings
    from lambdas.s3_compare import Listed

    acls_enabled(s3, "src-bucket", "dst-bucket")
    s3.put_object(Bucket="src-bucket", Key="public.html", Body=b"<html/>", ACL="public-read")
    s3.put_object(Bucket="src-bucket", Key="private", Body=b"p")
    job = BucketJob(source="src-bucket", target="dst-bucket")
    settings = copy_settings(job, s3, s3)
    assert settings.acls  # no ownership controls (a bucket older than 2023): ACLs as they always were
    listed = [Listed.from_head(k, s3.head_object(Bucket="src-bucket", Key=k)) for k in ("public.html", "private")]

    copy_objects(s3, "src-bucket", "dst-bucket", listed, settings=settings)

    def public(key):
        return [g["Permission"] for g in s3.get_object_acl(Bucket="dst-bucket", Key=key)["Grants"]
                if g["Grantee"].get("URI", "").endswith("AllUsers")]
    assert (public("public.html"), public("private")) == (["READ"], [])
    s3.put_bucket_ownership_controls(Bucket="src-bucket", OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert not copy_settings(job, s3, s3).acls  # ACLs disabled: nothing to carry, no request spent on them


class ChangesMetadataAfterCopy:
    """An S3 client that, right after the first copy into the target, changes the source's metadata
    (same bytes, same ETag): the interleaving in which another applier's newer copy landed first."""

    def __init__(self, client):
        self.client, self.ran = client, 0

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != "copy_object":
            return attribute

        def copying(**kwargs):
            answer = attribute(**kwargs)
            if not self.ran and kwargs["Bucket"] == "dst-bucket":
                self.ran += 1
                self.client.copy_object(Bucket="src-bucket", Key=kwargs["Key"], MetadataDirective="REPLACE",
                                        CopySource={"Bucket": "src-bucket", "Key": kwargs["Key"]},
                                        Metadata={"rev": "2"})
            return answer
        return copying


def test_a_live_copy_whose_source_metadata_changed_meanwhile_is_copied_again(s3):
    s3.put_object(Bucket="src-bucket", Key="k", Body=b"same", Metadata={"rev": "1"})
    racing = ChangesMetadataAfterCopy(s3)
    assert sync_key(racing, "src-bucket", "dst-bucket", "k") == "copied"
    assert racing.ran == 1
    assert s3.head_object(Bucket="dst-bucket", Key="k")["Metadata"] == {"rev": "2"}


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "soon"])
def test_a_settle_time_that_is_no_number_of_seconds_is_bad_input(monkeypatch, value):
    monkeypatch.setenv("FERRY_EVENT_SETTLE_SECONDS", value)
    with pytest.raises(events.BadInput, match="FERRY_EVENT_SETTLE_SECONDS"):
        events.settle_seconds()


def test_a_batch_applies_each_key_once_whatever_number_of_messages_name_it(s3):
    from lambdas.s3_apply import apply_batch

    def message(key, name="ObjectCreated:Put"):
        return json.dumps({"Records": [{"eventName": name, "s3": {"bucket": {"name": "src-bucket"},
                                                                    "object": {"key": key}}}]})

    applied = []
    bodies = [message("k"), message("k", "ObjectTagging:Put"), message("other"), "not an event", message("bad"), "[]"]

    def apply_key(bucket, key, kinds):
        if key == "bad":
            raise RuntimeError("AWS said no")
        applied.append((key, kinds))

    done = apply_batch(bodies, apply_key)

    assert done == [True, True, True, False, False, False]  # unreadable messages and a failing key fail alone
    assert sorted(applied) == [("k", ["tags"]), ("other", ["object"])]  # the put's two events: one apply


def test_only_grants_to_groups_are_carried_so_grants_to_accounts_never_keep_a_copy_different():
    from lambdas.s3_attributes import extra_grants

    owner, other = {"Type": "CanonicalUser", "ID": "a" * 64}, {"Type": "CanonicalUser", "ID": "b" * 64}
    everyone = {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}
    uploaded_by_another_account = {"Owner": {"ID": other["ID"]}, "Grants": [
        {"Grantee": other, "Permission": "FULL_CONTROL"}, {"Grantee": owner, "Permission": "FULL_CONTROL"},
        {"Grantee": everyone, "Permission": "READ"}]}
    copy = {"Owner": {"ID": owner["ID"]}, "Grants": [{"Grantee": owner, "Permission": "FULL_CONTROL"},
                                                      {"Grantee": everyone, "Permission": "READ"}]}
    assert extra_grants(uploaded_by_another_account) == extra_grants(copy) == {("READ", f'uri="{everyone["URI"]}"')}


def test_finishing_keeps_a_queue_that_still_holds_events_and_the_dead_letter_queue_it_redrives_to(aws):
    sqs = boto3.client("sqs")
    name, dead = events.queue_names("src-bucket", "dst-bucket")
    url, _ = events.ensure_queue(sqs, "src-bucket", name, dead)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": []}))

    removed, kept, dead_letters = events.delete_queues(sqs, "src-bucket", "dst-bucket")

    assert removed == [] and dead_letters == 0 and len(kept) == 2  # nothing lost, the redrive intact
    received(sqs, url)
    assert events.delete_queues(sqs, "src-bucket", "dst-bucket")[0] == [f"queue {name}", f"queue {dead}"]


def test_deep_verification_compares_grants_and_repair_restores_them(s3):
    """A copy whose grants write was lost (a kill between the copy and the write) is found by `--deep`
    (rule step 8) and made right by repair; a target granting what its source does not is found too."""
    from ferry.s3.copy import copy_objects
    from ferry.s3.verify import reconfirm, verify_buckets
    from lambdas.s3_compare import Listed
    from lambdas.s3_copy import CopySettings

    acls_enabled(s3, "src-bucket", "dst-bucket")
    s3.put_object(Bucket="src-bucket", Key="public.html", Body=b"<html/>", ACL="public-read")
    s3.put_object(Bucket="src-bucket", Key="private", Body=b"p")
    s3.put_object(Bucket="src-bucket", Key="plain", Body=b"q")
    listed = [Listed.from_head(k, s3.head_object(Bucket="src-bucket", Key=k)) for k in ("public.html", "private")]
    copy_objects(s3, "src-bucket", "dst-bucket", listed)  # no grants written: as if killed right after the copies
    s3.put_object(Bucket="dst-bucket", Key="plain", Body=b"q", ACL="public-read")  # granted on the target alone
    with_acls = CopySettings(acls=True)

    assert verify_buckets(s3, s3, "src-bucket", "dst-bucket", settings=with_acls).equal  # a listing sees no ACL
    deep = verify_buckets(s3, s3, "src-bucket", "dst-bucket", deep=True, settings=with_acls)
    assert (deep.equal, deep.changed) == (False, ["plain", "public.html"])
    assert verify_buckets(s3, s3, "src-bucket", "dst-bucket", deep=True).equal  # ACLs not carried: not compared
    again = reconfirm(deep, s3, s3, with_acls, deep=True)  # read again after live sync's events: the same rule
    assert (again.equal, again.changed) == (False, ["plain", "public.html"])

    copy_objects(s3, "src-bucket", "dst-bucket", deep.to_copy, settings=with_acls)  # what repair does
    assert verify_buckets(s3, s3, "src-bucket", "dst-bucket", deep=True, settings=with_acls).equal


def test_a_deep_verification_read_again_keeps_a_tag_change_with_as_many_tags(s3):
    """Reconfirming a deep report (after live sync's queued events) judges by the same rule as the
    comparison did: a tag value changed on the source alone stays a difference."""
    from ferry.s3.verify import reconfirm, verify_buckets

    s3.put_object(Bucket="src-bucket", Key="doc", Body=b"d", Tagging="team=web")
    s3.put_object(Bucket="dst-bucket", Key="doc", Body=b"d", Tagging="team=data")
    deep = verify_buckets(s3, s3, "src-bucket", "dst-bucket", deep=True)
    assert deep.changed == ["doc"]
    assert reconfirm(deep, s3, s3, deep=True).changed == ["doc"]
    s3.put_object_tagging(Bucket="dst-bucket", Key="doc", Tagging={"TagSet": [{"Key": "team", "Value": "web"}]})
    assert reconfirm(deep, s3, s3, deep=True).equal  # made right meanwhile: read again, no longer a difference


def test_grants_of_a_target_object_deleted_while_they_are_compared_are_not_called_the_same(s3):
    from lambdas.s3_attributes import same_grants

    acls_enabled(s3, "src-bucket", "dst-bucket")
    for bucket in ("src-bucket", "dst-bucket"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")

    class DeletesTargetFirst:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            if name == "get_object_acl":
                self.client.delete_object(Bucket="dst-bucket", Key="k")
            return getattr(self.client, name)

    assert same_grants(s3, "src-bucket", "dst-bucket", "k")
    assert not same_grants(DeletesTargetFirst(s3), "src-bucket", "dst-bucket", "k")


def test_a_pair_routed_while_another_pair_of_its_source_is_unrouted_stays_live(s3):
    """Both interleavings of one pair's routing (EventBridge) with the end of another's, the last
    Ferry rule of the bucket: delivery stays on for the pair that remains."""
    sqs, bus = boto3.client("sqs"), boto3.client("events")
    s3.create_bucket(Bucket="dst-two")
    _, first_arn, _ = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "", mode="eventbridge")
    second_url, second_arn = queue(sqs, events.queue_names("src-bucket", "dst-two")[0])

    # the second pair judges delivery on (the first's rule relies on it); the first ends before its rule is put
    racing = RunsFirst(bus, "put_rule", lambda: routes.unroute(s3, bus, "src-bucket", "dst-bucket", first_arn))
    routes.route(s3, racing, "src-bucket", "dst-two", "", second_arn, mode="eventbridge")
    assert racing.ran == 1 and routes._our_rule(bus, routes.route_name("src-bucket", "dst-bucket")) is None
    assert eventbridge_delivers(s3, sqs, "src-bucket")

    # the other way round: a pair ends (no other rule seen) while a new pair is routed, before delivery goes off
    _, first_arn, _ = events.route_to_queue(sqs, s3, bus, "src-bucket", "dst-bucket", "", mode="eventbridge")
    routes.unroute(s3, bus, "src-bucket", "dst-two", second_arn)
    racing = RunsFirst(s3, "put_bucket_notification_configuration",
                       lambda: routes.route(s3, bus, "src-bucket", "dst-two", "", second_arn, mode="eventbridge"))
    done = routes.unroute(racing, bus, "src-bucket", "dst-bucket", first_arn)
    assert racing.ran == 1
    assert done.removed == ["EventBridge rule ferry-sync-src-bucket-dst-bucket"]
    assert eventbridge_delivers(s3, sqs, "src-bucket")
    received(sqs, second_url)
    s3.put_object(Bucket="src-bucket", Key="after", Body=b"x")
    assert drain(sqs, s3, second_url, "src-bucket", "dst-two")["messages"] >= 1
    assert s3.get_object(Bucket="dst-two", Key="after")["Body"].read() == b"x"
