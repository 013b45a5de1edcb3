"""`ferry bucket`, `ferry verify bucket`, `ferry sync bucket` against a moto server over HTTP."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import threading
import time

import boto3
import pytest

from conftest import FERRY
from interleave import RunsFirst
from lambdas.s3_handler import handle

MIB = 2**20
SMALL_THRESHOLD = ["--multipart-threshold", str(5 * MIB), "--part-size", str(5 * MIB)]
TRICKY_KEYS = ["red flower.jpg", "a+b=c.txt", "100% sure.txt", "ünïcødé/ключ 🚀.txt", "dir/", "empty", "x/y/z.bin"]
HEADERS = {"ContentType": "image/jpeg", "ContentEncoding": "gzip", "ContentDisposition": "attachment; filename=a.jpg",
           "CacheControl": "max-age=60", "ContentLanguage": "pt-PT",
           "Expires": datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)}


def put(s3, key: str, body: bytes = b"hello", **extra) -> None:
    s3.put_object(Bucket="src-bucket", Key=key, Body=body, **extra)


def described(s3, bucket: str, key: str) -> dict:
    head = s3.head_object(Bucket=bucket, Key=key)
    metadata = {k: v for k, v in head.get("Metadata", {}).items() if k != "ferry-source-etag"}
    return {"size": head["ContentLength"], "metadata": metadata, "storage": head.get("StorageClass", "STANDARD"),
            "tags": sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]),
            "body": s3.get_object(Bucket=bucket, Key=key)["Body"].read(),
            **{name: head.get(name) for name in HEADERS}}


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


def test_headers_metadata_tags_and_storage_class_survive_small_and_multipart_copies(s3, run_ferry):
    for key in TRICKY_KEYS:
        put(s3, key, b"" if key in ("dir/", "empty") else key.encode() * 3)
    put(s3, "photo.jpg", b"jpeg" * 100, Metadata={"owner": "ana", "x-thing": "b=1;c"}, Tagging="team=web&env=prod",
        StorageClass="STANDARD_IA", **HEADERS)
    big = os.urandom(11 * MIB)  # three parts at 5 MiB
    put(s3, "big/video.mp4", big, Metadata={"codec": "h264"}, Tagging="tier=cold", StorageClass="STANDARD_IA",
        **HEADERS)

    result = run_ferry("bucket", "src-bucket", "dst-bucket", *SMALL_THRESHOLD, "--json")

    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["verified"] is True and summary["copied"] == len(TRICKY_KEYS) + 2
    assert summary["bytes_copied"] == sum(described(s3, "src-bucket", k)["size"] for k in keys(s3, "src-bucket"))
    assert keys(s3, "dst-bucket") == keys(s3, "src-bucket")
    for key in keys(s3, "src-bucket"):
        assert described(s3, "dst-bucket", key) == described(s3, "src-bucket", key), key
    copy = s3.head_object(Bucket="dst-bucket", Key="big/video.mp4")
    assert copy["ETag"].endswith('-3"')  # really copied in parts
    assert copy["Metadata"]["ferry-source-etag"] == s3.head_object(Bucket="src-bucket", Key="big/video.mp4")["ETag"].strip('"')

    again = run_ferry("bucket", "src-bucket", "dst-bucket", *SMALL_THRESHOLD, "--json")
    assert again.returncode == 0 and again.json["copied"] == 0 and again.json["bytes_copied"] == 0


def test_delete_removes_only_target_keys_the_source_does_not_have(s3, run_ferry):
    put(s3, "keep.txt")
    s3.put_object(Bucket="dst-bucket", Key="stale.txt", Body=b"old")

    kept = run_ferry("bucket", "src-bucket", "dst-bucket", env={"COLUMNS": "140"})  # as a person runs it in a
    assert kept.returncode == 0 and "stale.txt" in keys(s3, "dst-bucket")  # terminal: a live line, then a summary
    assert "1/1 copied, 1 compared" in kept.stderr and "deleted" in kept.stdout
    assert "events, lag " in kept.stderr  # the drain's events (moto sends a test event) and their lag

    deleted = run_ferry("bucket", "src-bucket", "dst-bucket", "--delete", "--json")
    assert deleted.returncode == 0 and deleted.json["deleted"] == 1
    assert keys(s3, "dst-bucket") == {"keep.txt"}


def test_resume_after_sigkill_copies_only_the_rest(s3, run_ferry):
    for i in range(900):
        put(s3, f"part-{i // 100}/obj-{i:05d}", b"x" * 100)
    command = [FERRY, "bucket", "src-bucket", "dst-bucket", "--json"]
    first = subprocess.Popen(command, env=run_ferry.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while len(keys(s3, "dst-bucket")) < 100 and time.monotonic() < deadline:
        assert first.poll() is None, "the copy finished before it could be killed"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)
    present = len(keys(s3, "dst-bucket"))
    assert 100 <= present < 900

    rerun = run_ferry(*command[1:])

    assert rerun.returncode == 0, rerun.stderr
    assert rerun.json["copied"] == 900 - present and rerun.json["verified"] is True
    assert len(keys(s3, "dst-bucket")) == 900


def test_existing_notification_configuration_survives_and_a_clash_is_a_clear_error(s3, run_ferry):
    sqs = boto3.client("sqs")
    audit = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="audit")["QueueUrl"],
                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    existing = {"QueueConfigurations": [{"Id": "restores", "QueueArn": audit, "Events": ["s3:ObjectRestore:*"]}]}
    s3.put_bucket_notification_configuration(Bucket="src-bucket", NotificationConfiguration=existing)
    put(s3, "a.txt")

    assert run_ferry("bucket", "src-bucket", "dst-bucket", "--json").returncode == 0

    after = s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"]
    assert [(c["Id"], c["QueueArn"], c["Events"]) for c in after if c["Id"] == "restores"] == [
        ("restores", audit, ["s3:ObjectRestore:*"])]
    assert {c["Id"] for c in after} == {"restores", "ferry-sync-src-bucket-dst-bucket"}  # the pair's own entry

    s3.create_bucket(Bucket="other-src")
    clash = {"QueueConfigurations": [{"Id": "uploads", "QueueArn": audit, "Events": ["s3:ObjectCreated:Put"]}]}
    s3.put_bucket_notification_configuration(Bucket="other-src", NotificationConfiguration=clash)
    refused = run_ferry("bucket", "other-src", "dst-bucket", "--events", "notification")  # auto would take EventBridge
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--events eventbridge" in refused.stderr and "uploads" in refused.stderr
    now = s3.get_bucket_notification_configuration(Bucket="other-src")["QueueConfigurations"]
    assert [c["Id"] for c in now] == ["uploads"]


def test_writes_and_deletes_during_ferry_bucket_end_with_equal_buckets(s3, run_ferry):
    for i in range(600):
        put(s3, f"obj-{i:04d}", b"v1")
    stop = threading.Event()

    def live_writes():
        client = boto3.client("s3")
        n = 0
        while not stop.is_set():
            n += 1
            if n % 3 == 0:
                client.delete_object(Bucket="src-bucket", Key=f"obj-{(n * 7) % 600:04d}")
            else:
                client.put_object(Bucket="src-bucket", Key=f"new {n} ü+%.txt" if n % 2 else f"obj-{n % 600:04d}",
                                  Body=f"v{n}".encode())
            time.sleep(0.01)

    writer = threading.Thread(target=live_writes)
    writer.start()
    result = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    stop.set()
    writer.join()
    assert result.returncode in (0, 1), result.stderr

    behind = run_ferry("status", "src-bucket", "dst-bucket", "--bucket", "--json")
    assert behind.returncode == 0, behind.stderr
    assert behind.json["events_routed"] and behind.json["pending"] > 0  # writes went on after the drain

    synced = run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2", "--json")
    assert synced.returncode == 0, synced.stderr
    caught_up = run_ferry("status", "src-bucket", "dst-bucket", "--bucket", "--json").json
    assert (caught_up["pending"], caught_up["in_flight"], caught_up["dead_letters"]) == (0, 0, 0)
    assert caught_up["lambda_mappings"] == []  # applied by the poller
    never = run_ferry("status", "src-bucket", "elsewhere", "--bucket")
    assert never.returncode == 2 and "does not exist (run `ferry bucket" in never.stderr
    final = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--json")
    assert final.returncode == 0, final.stdout
    assert final.json["equal"] is True and final.json["source_objects"] == final.json["target_objects"]


def test_verify_bucket_names_differences_and_repair_fixes_them(s3, run_ferry, tmp_path):
    for key in ("a", "b", "c", "logs/2026/x.log", "logs/2026/y.log"):
        put(s3, key, key.encode())
    assert run_ferry("bucket", "src-bucket", "dst-bucket", "--json").returncode == 0
    s3.delete_object(Bucket="dst-bucket", Key="a")
    s3.put_object(Bucket="dst-bucket", Key="b", Body=b"bb")
    s3.put_object(Bucket="dst-bucket", Key="zzz", Body=b"extra")

    s3.delete_object(Bucket="dst-bucket", Key="logs/2026/y.log")

    found = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--report-dir", str(tmp_path), "--json")
    assert found.returncode == 1
    assert (found.json["missing"], found.json["changed"], found.json["extra"]) == (["a", "logs/2026/y.log"], ["b"], ["zzz"])
    prefixes = (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.endswith("-prefixes.csv"))).read_text()
    # per prefix: source objects, bytes; target objects, bytes; missing, extra, changed
    assert "logs/,2,30,1,15,1,0,0" in prefixes.splitlines()
    assert "(top level),3,3,3,8,1,1,1" in prefixes.splitlines()
    assert "| missing | logs/2026/y.log |" in next(tmp_path.glob("*.md")).read_text()

    repaired = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--repair", "--delete", "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.json["repaired"] == 4 and keys(s3, "dst-bucket") == {"a", "b", "c", "logs/2026/x.log",
                                                                         "logs/2026/y.log"}


def test_handler_decodes_keys_and_makes_the_target_match_the_source_whatever_the_event_order(s3):
    put(s3, "red flower.jpg", b"petals")
    put(s3, "gone.txt", b"x")
    s3.put_object(Bucket="dst-bucket", Key="gone.txt", Body=b"x")
    s3.delete_object(Bucket="src-bucket", Key="gone.txt")

    def message(key, name="ObjectCreated:Put", n=1):
        body = {"Records": [{"eventName": name, "s3": {"bucket": {"name": "src-bucket"}, "object": {"key": key}}}]}
        return {"messageId": f"m{n}", "body": json.dumps(body)}

    event = {"Records": [message("gone.txt", "ObjectCreated:Put", 1),  # stale hint: the object is gone now
                         message("red+flower.jpg", n=2), message("red+flower.jpg", n=3),  # duplicate
                         message("gone.txt", "ObjectRemoved:Delete", 4)]}

    assert handle(event, s3, "dst-bucket") == {"batchItemFailures": []}
    assert keys(s3, "dst-bucket") == {"red flower.jpg"}
    assert s3.get_object(Bucket="dst-bucket", Key="red flower.jpg")["Body"].read() == b"petals"


def test_bucket_lambda_live_sync_is_deployed_on_the_event_queue_with_partial_failures(s3, run_ferry):
    put(s3, "a.txt")

    result = run_ferry("bucket", "src-bucket", "dst-bucket", "--live-sync", "lambda", "--json")

    assert result.returncode == 0, result.stderr
    lambda_client, iam = boto3.client("lambda"), boto3.client("iam")
    function = lambda_client.get_function(FunctionName="ferry-sync-src-bucket-dst-bucket-s3")["Configuration"]
    assert function["Handler"] == "lambdas.s3_handler.handler"
    assert function["Environment"]["Variables"] == {"TARGET_BUCKET": "dst-bucket"}  # ACLs off: nothing to carry
    [mapping] = lambda_client.list_event_source_mappings(FunctionName=function["FunctionName"])["EventSourceMappings"]
    assert mapping["EventSourceArn"].endswith(":ferry-sync-src-bucket-dst-bucket")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    policy = iam.get_role_policy(RoleName=function["FunctionName"], PolicyName="ferry-live-sync")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert "arn:aws:s3:::dst-bucket/*" in resources and "arn:aws:s3:::src-bucket" in resources
    assert all(not a.endswith("*") for statement in policy["Statement"] for a in statement["Action"])
    printed = run_ferry("iam-policy", "bucket", "src-bucket", "dst-bucket", "--live-sync", "lambda").json
    assert printed["live_sync_role"] == policy  # what `ferry iam-policy` prints is what the deployment attached
    deploying = {s["Sid"]: s["Resource"] for s in printed["operator"]["Statement"]}
    assert deploying["LiveSyncFunction"] == [function["FunctionArn"]]


def test_event_queue_setup_is_idempotent_and_brings_an_older_queue_up_to_date(aws):
    from ferry.s3 import events

    sqs = boto3.client("sqs")
    sqs.create_queue(QueueName="ferry-old", Attributes={"MessageRetentionPeriod": "60"})  # an older setup
    first = events.ensure_queue(sqs, "src-bucket", "ferry-old", "ferry-old-dlq")
    again = events.ensure_queue(sqs, "src-bucket", "ferry-old", "ferry-old-dlq")

    assert first == again
    url, arn = first
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == arn and attributes["MessageRetentionPeriod"] == "1209600"
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith(":ferry-old-dlq")
    assert json.loads(attributes["Policy"])["Statement"][0]["Resource"] == arn


def upload_in_parts(s3, key: str, parts: int = 2, **extra) -> None:
    """As `aws s3 cp` uploads any file above 8 MB: a multipart upload (its ETag is not an MD5)."""
    upload = s3.create_multipart_upload(Bucket="src-bucket", Key=key, **extra)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="src-bucket", Key=key, UploadId=upload, PartNumber=n,
                                                     Body=os.urandom(5 * MIB))["ETag"]} for n in range(1, parts + 1)]
    s3.complete_multipart_upload(Bucket="src-bucket", Key=key, UploadId=upload, MultipartUpload={"Parts": done})


def test_objects_uploaded_in_parts_below_the_copy_threshold_verify_and_are_not_copied_again(s3, run_ferry):
    """Default thresholds: a 10 MiB object uploaded in parts is copied with one CopyObject, so the
    two ETags differ in kind; the source's ETag recorded on the copy is what proves them equal."""
    upload_in_parts(s3, "videos/a.mp4", ContentType="video/mp4", Metadata={"camera": "x"})
    upload_in_parts(s3, "videos/b.mp4")
    put(s3, "small.txt")
    assert "-" in s3.head_object(Bucket="src-bucket", Key="videos/a.mp4")["ETag"]
    first = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    assert first.returncode == 0, first.stderr
    assert first.json["verified"] is True and first.json["copied"] == 3
    again = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    assert again.returncode == 0 and again.json["verified"] is True and again.json["copied"] == 0
    assert described(s3, "dst-bucket", "videos/a.mp4") == described(s3, "src-bucket", "videos/a.mp4")
    deep = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--deep", "--json")
    assert deep.returncode == 0 and deep.json["equal"] is True


def test_bucket_names_with_dots_get_valid_queue_names_and_migrate(aws, run_ferry):
    s3 = boto3.client("s3")
    for bucket in ("media.example.com", "media-v2.example.com"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="media.example.com", Key="index.html", Body=b"<html/>")
    ran = run_ferry("bucket", "media.example.com", "media-v2.example.com", "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.json["verified"] is True and ran.json["copied"] == 1
    s3.put_object(Bucket="media.example.com", Key="new.html", Body=b"<html/>")
    assert run_ferry("sync", "bucket", "media.example.com", "media-v2.example.com", "--until-idle", "1").returncode == 0
    assert "new.html" in keys(s3, "media-v2.example.com")
    status = run_ferry("status", "bucket", "media.example.com", "media-v2.example.com", "--json")
    assert status.returncode == 0 and status.json["events_routed"] is True


def test_names_of_pairs_are_valid_unique_and_unchanged_where_they_were_valid():
    from ferry.names import pair_name

    assert pair_name("media", "media-v2", 76) == "ferry-sync-media-media-v2"  # what earlier versions created
    dotted = pair_name("a.b", "c", 76)
    assert "." not in dotted and dotted != pair_name("a-b", "c", 76) != pair_name("a.b", "c.d", 76)
    long = [pair_name("x" * 63, target, 64) for target in ("y" * 63, "y" * 62 + "z")]
    assert len(set(long)) == 2 and all(len(n) <= 64 for n in long)


def test_parts_are_sized_to_fit_s3s_ten_thousand_and_a_killed_copys_upload_is_aborted(s3, run_ferry):
    from lambdas.s3_copy import MAX_PARTS, PART_SIZE, fitting_part_size

    for size in (10 * MIB, PART_SIZE * MAX_PARTS, PART_SIZE * MAX_PARTS + 1, 5 * 2**40):
        part = fitting_part_size(size, PART_SIZE)
        assert -(-size // part) <= MAX_PARTS and part % MIB == 0 and (part == PART_SIZE or part > PART_SIZE)
    put(s3, "big.bin", os.urandom(11 * MIB))
    left = s3.create_multipart_upload(Bucket="dst-bucket", Key="big.bin")["UploadId"]  # a copy killed mid-way
    ran = run_ferry("bucket", "src-bucket", "dst-bucket", *SMALL_THRESHOLD, "--json")
    assert ran.returncode == 0 and ran.json["verified"] is True, ran.stderr
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="dst-bucket").get("Uploads", [])] == [], left


def test_the_event_queue_takes_the_buckets_events_only_and_outlasts_the_lambdas_timeout(s3, run_ferry):
    from ferry.s3.events import queue_names
    from ferry.s3.lambda_sync import FUNCTION_TIMEOUT_SECONDS, execution_policy

    put(s3, "a.txt")
    assert run_ferry("bucket", "src-bucket", "dst-bucket").returncode == 0
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_names("src-bucket", "dst-bucket")[0])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) >= FUNCTION_TIMEOUT_SECONDS
    condition = json.loads(attributes["Policy"])["Statement"][0]["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == attributes["QueueArn"].split(":")[4]
    assert condition["ArnLike"]["aws:SourceArn"] == "arn:aws:s3:::src-bucket"
    policy = execution_policy(attributes["QueueArn"], "src-bucket", "dst-bucket", "", "arn:aws:logs:x")
    on_target_objects = [s["Action"] for s in policy["Statement"] if s["Resource"] == ["arn:aws:s3:::dst-bucket/*"]]
    assert "s3:GetObject" in on_target_objects[0]  # the handler HEADs the target


def create_and_copy(s3, key: str, body: bytes):
    def meanwhile():
        s3.put_object(Bucket="src-bucket", Key=key, Body=body)
        s3.copy_object(Bucket="dst-bucket", Key=key, CopySource={"Bucket": "src-bucket", "Key": key})
    return meanwhile


def test_delete_extras_never_leaves_deleted_a_key_the_source_has_at_the_moment_of_the_delete(s3):
    from ferry.s3.copy import delete_extras

    s3.put_object(Bucket="dst-bucket", Key="extra", Body=b"only in the target")
    s3.put_object(Bucket="dst-bucket", Key="recreated", Body=b"old")
    racing = RunsFirst(s3, ("delete_object", "delete_objects"), create_and_copy(s3, "recreated", b"created meanwhile"))
    assert delete_extras(racing, "src-bucket", "dst-bucket", ["extra", "recreated"]) == 1
    assert racing.ran == 1 and keys(s3, "dst-bucket") == {"recreated"}
    assert s3.get_object(Bucket="dst-bucket", Key="recreated")["Body"].read() == b"created meanwhile"


def test_a_live_sync_delete_decided_on_a_stale_read_is_undone_by_the_read_after_it(s3):
    from lambdas.s3_apply import sync_key

    s3.put_object(Bucket="dst-bucket", Key="k", Body=b"deleted in the source")
    racing = RunsFirst(s3, ("delete_object", "delete_objects"), create_and_copy(s3, "k", b"newer copy"))
    assert sync_key(racing, "src-bucket", "dst-bucket", "k") == "copied"
    assert racing.ran == 1
    assert s3.get_object(Bucket="dst-bucket", Key="k")["Body"].read() == b"newer copy"
    assert sync_key(s3, "src-bucket", "dst-bucket", "gone") == "deleted"  # nothing to restore: a plain delete


def test_the_listing_is_the_proof_only_when_every_event_applied():
    from ferry.s3.sync import listing_is_proof

    assert listing_is_proof(0, 0, {"messages": 0, "failed": 0}) is True
    assert listing_is_proof(0, 0, {"messages": 0, "failed": 1}) is False  # a queued change that did not apply
    assert listing_is_proof(0, 0, {"messages": 2, "failed": 0}) is False
    assert listing_is_proof(3, 0, {"messages": 0, "failed": 0}) is False


def test_a_prefixed_migrations_live_sync_touches_only_keys_under_its_prefix(s3, run_ferry):
    put(s3, "photos/a.jpg")
    put(s3, "other/keep.txt")
    s3.put_object(Bucket="dst-bucket", Key="other/keep.txt", Body=b"the target's own")
    assert run_ferry("bucket", "src-bucket", "dst-bucket", "--prefix", "photos/").returncode == 0
    routed = s3.get_bucket_notification_configuration(Bucket="src-bucket")["QueueConfigurations"]
    assert routed[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "Prefix", "Value": "photos/"}] or \
        routed[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "photos/"}]
    put(s3, "photos/b.jpg")
    put(s3, "other/new.txt")
    s3.delete_object(Bucket="src-bucket", Key="other/keep.txt")
    synced = run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2", "--json")  # no --prefix
    assert synced.returncode == 0, synced.stderr
    assert keys(s3, "dst-bucket") == {"photos/a.jpg", "photos/b.jpg", "other/keep.txt"}
    assert run_ferry("status", "bucket", "src-bucket", "dst-bucket").returncode == 0  # nothing dead-lettered
    wrong = run_ferry("sync", "bucket", "src-bucket", "dst-bucket", "--prefix", "other/", "--until-idle", "1")
    assert wrong.returncode == 2 and "was made with --prefix 'photos/'" in wrong.stderr


def test_the_bucket_lambda_skips_keys_outside_its_prefix_instead_of_failing(s3):
    body = json.dumps({"Records": [{"s3": {"bucket": {"name": "src-bucket"}, "object": {"key": "other/x"}}}]})
    put(s3, "other/x")
    assert handle({"Records": [{"messageId": "1", "body": body}]}, s3, "dst-bucket", "photos/") == {"batchItemFailures": []}
    assert keys(s3, "dst-bucket") == set()


@pytest.mark.parametrize("case", ["source-missing", "target-missing", "same-bucket", "unknown-region",
                                  "unreachable-endpoint", "unknown-option", "bad-part-size"])
def test_bad_bucket_input_exits_2_with_one_line_and_writes_nothing(s3, run_ferry, case):
    put(s3, "a/one.txt")
    args = {"source-missing": ["bucket", "no-such-bucket", "dst-bucket"],
            "target-missing": ["bucket", "src-bucket", "no-such-bucket"],
            "same-bucket": ["bucket", "src-bucket", "src-bucket"],
            "unknown-region": ["bucket", "src-bucket", "dst-bucket", "--source-region", "mars-north-1"],
            "unreachable-endpoint": ["bucket", "src-bucket", "dst-bucket", "--endpoint-url", "http://127.0.0.1:9"],
            "unknown-option": ["bucket", "src-bucket", "dst-bucket", "--delete-all"],
            "bad-part-size": ["bucket", "src-bucket", "dst-bucket", "--part-size", "1"]}[case]

    result = run_ferry(*args, env={"AWS_MAX_ATTEMPTS": "2"})

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ferry: error: ") and "Traceback" not in result.stderr, lines
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == ["dst-bucket", "src-bucket"]
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []  # no event queue
    routed = s3.get_bucket_notification_configuration(Bucket="src-bucket")
    assert not routed.get("QueueConfigurations") and keys(s3, "dst-bucket") == set()


def test_a_prefix_with_no_objects_is_a_warning_not_an_error(s3, run_ferry):
    put(s3, "a/one.txt")
    result = run_ferry("bucket", "src-bucket", "dst-bucket", "--prefix", "nothing-here/", "--json")
    assert result.returncode == 0, result.stderr
    assert "no objects under" in result.stderr and "nothing-here/" in result.stderr
    assert keys(s3, "dst-bucket") == set()


def test_archived_objects_are_reported_not_copied_and_a_restored_one_is_copied(s3, run_ferry):
    """GLACIER and DEEP_ARCHIVE objects cannot be copied until restored: the run copies the rest,
    names them (count, bytes), does not call the bucket verified (exit 1, not 3), and copies an
    object once its restore is done."""
    for n in range(4):
        s3.put_object(Bucket="src-bucket", Key=f"warm/{n}", Body=b"w" * (n + 1))
    s3.put_object(Bucket="src-bucket", Key="cold/a", Body=b"a" * 100, StorageClass="GLACIER")
    s3.put_object(Bucket="src-bucket", Key="cold/b", Body=b"b" * 50, StorageClass="DEEP_ARCHIVE")

    first = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    assert first.returncode == 1, first.stderr
    assert first.json["verified"] is False and first.json["copied"] == 4
    assert (first.json["archived"], first.json["archived_bytes"]) == (2, 150)
    assert "2 archived objects (150 bytes" in first.stderr
    again = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    assert again.returncode == 1 and again.json["copied"] == 0  # nothing copied again, nothing failed
    verified = run_ferry("verify", "bucket", "src-bucket", "dst-bucket", "--json")
    assert verified.returncode == 1 and verified.json["equal"] is False
    assert verified.json["archived"] == ["cold/a", "cold/b"] and verified.json["archived_count"] == 2

    s3.restore_object(Bucket="src-bucket", Key="cold/a", RestoreRequest={"Days": 1})
    restored = run_ferry("bucket", "src-bucket", "dst-bucket", "--json")
    assert restored.json["copied"] == 1 and restored.json["archived"] == 1, restored.stdout
    copied = s3.head_object(Bucket="dst-bucket", Key="cold/a")  # in GLACIER too, like its source: HEAD, not GET
    assert copied["ContentLength"] == 100 and copied["StorageClass"] == "GLACIER"
    assert copied["ETag"] == s3.head_object(Bucket="src-bucket", Key="cold/a")["ETag"]
