"""Buckets as they are in production: a target KMS key, Object Lock, archived objects and restores.

Most tests call the engine's functions with boto3 clients on the session's moto server; one `ferry`
run per feature proves the command line wires them (each costs seconds of Prefect start-up).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import boto3
import pytest

from lambdas.s3_compare import RECORDED_ETAG, Listed

MIB = 2**20
UTC = datetime.timezone.utc
LATER = datetime.datetime(2031, 1, 1, tzinfo=UTC)
SMALL_THRESHOLD = ["--multipart-threshold", str(5 * MIB), "--part-size", str(5 * MIB)]
LOCK_SHIM = str(Path(__file__).parent / "moto_object_lock")  # see its sitecustomize.py


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def one_line_error(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("ferry: error: "), (run.returncode, lines)
    return lines[0]


def nothing_written(s3) -> None:
    assert keys(s3, "dst-bucket") == set()
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []
    assert not s3.get_bucket_notification_configuration(Bucket="src-bucket").get("QueueConfigurations")


def kms_key(**extra) -> str:
    return boto3.client("kms").create_key(**extra)["KeyMetadata"]["Arn"]


def lock_buckets(s3) -> None:
    """src-lock and dst-lock, both with Object Lock (so versioned)."""
    for bucket in ("src-lock", "dst-lock"):
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)


def put_locked(s3, key: str, body: bytes = b"record", hold: str = "OFF", **extra) -> None:
    s3.put_object(Bucket="src-lock", Key=key, Body=body, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=LATER,
                  ObjectLockLegalHoldStatus=hold, ChecksumAlgorithm="SHA256", **extra)


def lock_of(s3, bucket: str, key: str) -> tuple:
    found = s3.head_object(Bucket=bucket, Key=key)
    return found.get("ObjectLockMode"), found.get("ObjectLockRetainUntilDate"), found.get("ObjectLockLegalHoldStatus")


def copying_locks_on_moto(s3):
    """`s3`, with the header moto 5.2.6 wants on a CopyObject that sets Object Lock (AWS does not)."""
    def add_checksum_header(request, **kwargs):
        request.headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
    s3.meta.events.register("before-sign.s3.CopyObject", add_checksum_header)
    return s3


class Recording:
    """An S3 client that records the keyword arguments of one operation."""

    def __init__(self, client, operation: str):
        self.client, self.operation, self.calls = client, operation, []

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != self.operation:
            return attribute

        def recorded(**kwargs):
            self.calls.append(kwargs)
            return attribute(**kwargs)
        return recorded


# --- the one rule ---------------------------------------------------------------------------------

def head(size: int = 5, etag: str = '"5d41402abc4b2a76b9719d911017c592"', **extra) -> dict:
    return {"ContentLength": size, "ETag": etag, **extra}


def test_the_same_object_rule_counts_the_target_key_and_the_source_lock():
    from lambdas.s3_compare import same_object

    key = "arn:aws:kms:us-east-1:123456789012:key/k1"
    source = head()
    under_key = head(etag='"ab"', ServerSideEncryption="aws:kms", SSEKMSKeyId=key, Metadata={RECORDED_ETAG: source["ETag"].strip('"')})
    plain_copy = head()
    assert same_object(source, plain_copy) and same_object(source, under_key)  # without a key: bytes decide
    assert not same_object(source, plain_copy, target_kms_key_arn=key)  # not under the key: copied again
    assert same_object(source, under_key, target_kms_key_arn=key)
    assert not same_object(source, {**under_key, "SSEKMSKeyId": key.replace("k1", "k2")}, target_kms_key_arn=key)

    past = datetime.datetime(2001, 1, 1, tzinfo=UTC)
    locked = head(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=LATER, ObjectLockLegalHoldStatus="ON")
    assert same_object(locked, dict(locked), object_lock=True)
    assert not same_object(locked, head(), object_lock=True)  # retention and hold missing
    assert not same_object(locked, {**locked, "ObjectLockMode": "GOVERNANCE"}, object_lock=True)
    assert not same_object(locked, {**locked, "ObjectLockLegalHoldStatus": "OFF"}, object_lock=True)
    assert same_object(locked, head(), object_lock=False)  # a source without Object Lock: locks not compared
    defaulted = head(ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=LATER)  # the target bucket's default
    assert same_object(head(), defaulted, object_lock=True)
    expired = head(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=past)
    assert same_object(expired, head(), object_lock=True)  # a retention that no longer holds cannot be set


def test_intelligent_tiering_objects_in_an_archive_tier_are_archived_until_restored():
    from ferry.s3.compare import compare_objects
    from ferry.s3.restore import restore_request
    from lambdas.s3_compare import archived

    tiering = {"StorageClass": "INTELLIGENT_TIERING"}
    assert archived({**tiering, "ArchiveStatus": "ARCHIVE_ACCESS"})
    assert archived({**tiering, "ArchiveStatus": "DEEP_ARCHIVE_ACCESS", "Restore": 'ongoing-request="true"'})
    assert not archived({**tiering, "ArchiveStatus": "DEEP_ARCHIVE_ACCESS", "Restore": 'ongoing-request="false"'})
    assert not archived(tiering) and not archived({"StorageClass": "STANDARD", "ArchiveStatus": "ARCHIVE_ACCESS"})

    # a listing shows INTELLIGENT_TIERING only: the differing ones are HEADed before any copy
    source = [Listed("cold", 3, "a", "INTELLIGENT_TIERING"), Listed("warm", 3, "b", "INTELLIGENT_TIERING"),
              Listed("plain", 3, "c")]
    asked = []

    def still_archived(keys):
        asked.extend(keys)
        return {"cold"}

    compared = compare_objects(source, [], lambda keys: {}, still_archived=still_archived)
    assert asked == ["cold", "warm"]
    assert [o.key for o in compared.archived] == ["cold"] and [o.key for o in compared.to_copy] == ["warm", "plain"]
    # S3 refuses Days for Intelligent-Tiering's archive tiers (their restores do not expire)
    assert restore_request(Listed("cold", 3, "a", "INTELLIGENT_TIERING"), 7, "Bulk") == {
        "GlacierJobParameters": {"Tier": "Bulk"}}
    assert restore_request(Listed("g", 3, "a", "GLACIER"), 7, "Standard") == {
        "GlacierJobParameters": {"Tier": "Standard"}, "Days": 7}


def test_a_plan_bucket_takes_the_key_and_restore_options_by_the_commands_rules(tmp_path):
    from ferry.errors import BadInput
    from ferry.plan import load_plan

    path = tmp_path / "plan.yaml"
    path.write_text("name: media\nbuckets:\n  - source: media\n    target: media-v2\n"
                    "    target_kms_key: alias/media-v2\n    restore_days: 3\n")
    [job] = load_plan(path).bucket_jobs()
    assert (job.target_kms_key, job.restore_days, job.tier) == ("alias/media-v2", 3, "Bulk")
    assert load_plan(path).bucket_jobs(reverse=True)[0].target_kms_key is None  # syncing back: the old home as it was
    path.write_text("name: media\nbuckets:\n  - source: media\n    target: media-v2\n    restore_days: 0\n")
    with pytest.raises(BadInput, match=r"plan.yaml:3: buckets\[0\]: --restore must be at least 1 day"):
        load_plan(path)


# --- a target KMS key ----------------------------------------------------------------------------

def test_a_target_key_reencrypts_every_copy_small_multipart_and_live_and_then_compares_equal(s3):
    from ferry.s3.compare import compare_buckets
    from ferry.s3.copy import copy_objects
    from lambdas.s3_apply import sync_key
    from lambdas.s3_copy import CopySettings

    key = kms_key()
    settings = CopySettings(target_kms_key=key)
    s3.put_object(Bucket="src-bucket", Key="small", Body=b"hello", Metadata={"owner": "ana"}, ContentType="text/plain")
    s3.put_object(Bucket="src-bucket", Key="big", Body=os.urandom(6 * MIB))
    s3.put_object(Bucket="src-bucket", Key="old-copy", Body=b"copied before the key")
    s3.put_object(Bucket="dst-bucket", Key="old-copy", Body=b"copied before the key")
    s3.put_object(Bucket="src-bucket", Key="live", Body=b"x")
    s3.put_object(Bucket="dst-bucket", Key="live", Body=b"x")

    def to_copy() -> list[str]:
        return sorted(o.key for c in compare_buckets(s3, s3, "src-bucket", "dst-bucket", settings=settings)
                      for o in c.to_copy)

    assert to_copy() == ["big", "live", "old-copy", "small"]  # equal ETags, but not under the key
    listed = [Listed.from_head(k, s3.head_object(Bucket="src-bucket", Key=k)) for k in ("small", "big", "old-copy")]
    copy_objects(s3, "src-bucket", "dst-bucket", listed, multipart_threshold=5 * MIB, part_size=5 * MIB,
                 settings=settings)
    assert sync_key(s3, "src-bucket", "dst-bucket", "live", settings=settings) == "copied"

    for name in ("small", "big", "old-copy", "live"):
        copied = s3.head_object(Bucket="dst-bucket", Key=name)
        assert (copied["ServerSideEncryption"], copied["SSEKMSKeyId"]) == ("aws:kms", key), name
    small = s3.head_object(Bucket="dst-bucket", Key="small")
    assert (small["Metadata"]["owner"], small["ContentType"]) == ("ana", "text/plain")
    assert s3.get_object(Bucket="dst-bucket", Key="small")["Body"].read() == b"hello"
    assert to_copy() == []  # a re-sync copies nothing again
    assert sync_key(s3, "src-bucket", "dst-bucket", "live", settings=settings) == "unchanged"


def test_a_target_key_that_cannot_be_used_is_bad_input_naming_it_and_an_alias_resolves_to_its_arn(aws):
    from ferry.errors import BadInput
    from ferry.s3.preflight import target_key_arn

    kms = boto3.client("kms")
    usable = kms_key()
    kms.create_alias(AliasName="alias/media", TargetKeyId=usable)
    assert target_key_arn(kms, "alias/media") == usable == target_key_arn(kms, usable.rsplit("/", 1)[1])
    disabled = kms_key()
    kms.disable_key(KeyId=disabled.rsplit("/", 1)[1])  # moto answers 500 to an ARN here
    signing = kms_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    for key, problem in (("alias/nope", "does not exist"), (disabled, "is Disabled"), (signing, "symmetric")):
        with pytest.raises(BadInput, match=problem) as refused:
            target_key_arn(kms, key)
        assert key in str(refused.value) and "\n" not in str(refused.value)


def test_the_bucket_lambda_gets_the_key_and_lock_in_its_environment_and_its_copies_carry_them(s3, monkeypatch):
    import json

    from ferry.s3 import lambda_sync
    from lambdas import s3_handler
    from lambdas.s3_copy import CopySettings

    key = kms_key()
    sqs = boto3.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="events")["QueueUrl"],
                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deployed = lambda_sync.deploy(boto3.client("iam"), boto3.client("lambda"), boto3.client("logs"),
                                  source="src-bucket", target="dst-bucket", prefix="", queue_arn=queue,
                                  dead_letter_queue_arn=queue, settings=CopySettings(key, object_lock=True))
    environment = boto3.client("lambda").get_function(FunctionName=deployed.function_name)[
        "Configuration"]["Environment"]["Variables"]
    assert environment == {"TARGET_BUCKET": "dst-bucket", "TARGET_KMS_KEY": key, "OBJECT_LOCK": "true"}
    role = boto3.client("iam").get_role_policy(RoleName=deployed.function_name, PolicyName="ferry-live-sync")
    statements = {st["Sid"]: st for st in (json.loads(role["PolicyDocument"]) if isinstance(role["PolicyDocument"], str)
                                           else role["PolicyDocument"])["Statement"]}
    assert statements["TargetKey"]["Resource"] == [key]

    s3.put_object(Bucket="src-bucket", Key="new.txt", Body=b"n")
    body = json.dumps({"Records": [{"s3": {"bucket": {"name": "src-bucket"}, "object": {"key": "new.txt"}}}]})
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert s3_handler.handler({"Records": [{"messageId": "1", "body": body}]}, None) == {"batchItemFailures": []}
    assert s3.head_object(Bucket="dst-bucket", Key="new.txt")["SSEKMSKeyId"] == key


def test_ferry_bucket_with_a_target_key_encrypts_copies_verifies_and_refuses_an_unknown_key(s3, run_ferry):
    key = kms_key()
    boto3.client("kms").create_alias(AliasName="alias/media-v2", TargetKeyId=key)
    s3.put_object(Bucket="src-bucket", Key="a.txt", Body=b"a")
    s3.put_object(Bucket="src-bucket", Key="b/c.bin", Body=b"c" * 100)

    refused = run_ferry("bucket", "src-bucket", "dst-bucket", "--target-kms-key", "alias/no-such-key")
    assert "alias/no-such-key" in one_line_error(refused)
    nothing_written(s3)

    first = run_ferry("bucket", "src-bucket", "dst-bucket", "--target-kms-key", "alias/media-v2", "--json")
    assert first.returncode == 0, first.stderr
    assert first.json["copied"] == 2 and first.json["verified"] is True
    assert {s3.head_object(Bucket="dst-bucket", Key=k).get("SSEKMSKeyId") for k in ("a.txt", "b/c.bin")} == {key}
    again = run_ferry("bucket", "src-bucket", "dst-bucket", "--target-kms-key", "alias/media-v2", "--json")
    assert again.returncode == 0 and (again.json["copied"], again.json["verified"]) == (0, True), again.stderr

    printed = run_ferry("iam-policy", "bucket", "src-bucket", "dst-bucket", "--target-kms-key", "alias/media-v2").json
    [use] = [s for s in printed["operator"]["Statement"] if s["Sid"] == "TargetKey"]
    assert use["Resource"] == [key] and set(use["Action"]) == {"kms:DescribeKey", "kms:GenerateDataKey", "kms:Decrypt"}


# --- Object Lock ----------------------------------------------------------------------------------

def test_object_lock_copies_carry_retention_and_legal_hold_and_a_changed_lock_is_copied_again(s3):
    from ferry.s3.compare import compare_buckets
    from ferry.s3.copy import copy_objects
    from ferry.s3.preflight import copy_settings
    from ferry.config import BucketJob

    lock_buckets(s3)
    put_locked(s3, "held", hold="ON")
    put_locked(s3, "kept")
    s3.put_object(Bucket="src-lock", Key="big", Body=os.urandom(6 * MIB), ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=LATER, ChecksumAlgorithm="SHA256")
    settings = copy_settings(BucketJob(source="src-lock", target="dst-lock"), s3, s3)
    assert settings.object_lock
    copier = Recording(copying_locks_on_moto(s3), "create_multipart_upload")
    listed = [Listed.from_head(k, s3.head_object(Bucket="src-lock", Key=k)) for k in ("held", "kept", "big")]

    copy_objects(copier, "src-lock", "dst-lock", listed, multipart_threshold=5 * MIB, part_size=5 * MIB,
                 settings=settings)

    assert lock_of(s3, "dst-lock", "held") == lock_of(s3, "src-lock", "held") == ("COMPLIANCE", LATER, "ON")
    assert lock_of(s3, "dst-lock", "kept")[:2] == ("COMPLIANCE", LATER)
    [created] = copier.calls  # moto keeps no lock given to CreateMultipartUpload: what was asked is checked
    assert (created["ObjectLockMode"], created["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", LATER)

    def to_copy() -> list[str]:
        return sorted(o.key for c in compare_buckets(s3, s3, "src-lock", "dst-lock", settings=settings)
                      for o in c.to_copy)

    assert to_copy() == ["big"]  # (moto dropped its lock, so the rule calls it different, as it should)
    s3.put_object_legal_hold(Bucket="dst-lock", Key="held", LegalHold={"Status": "OFF"})
    assert to_copy() == ["big", "held"]  # a hold lifted on the target only is a difference
    copy_objects(copier, "src-lock", "dst-lock", [listed[0]], settings=settings)
    assert to_copy() == ["big"]


def test_ferry_bucket_refuses_a_target_without_object_lock_and_keeps_each_objects_lock(s3, run_ferry):
    lock_buckets(s3)
    put_locked(s3, "contracts/2026.pdf", hold="ON")
    s3.put_object(Bucket="src-lock", Key="notes.txt", Body=b"no retention")

    refused = run_ferry("bucket", "src-lock", "dst-bucket")
    assert "Object Lock" in one_line_error(refused) and "dst-bucket" in refused.stderr
    assert keys(s3, "dst-bucket") == set() and boto3.client("sqs").list_queues().get("QueueUrls", []) == []

    done = run_ferry("bucket", "src-lock", "dst-lock", "--json", env={"PYTHONPATH": LOCK_SHIM})
    assert done.returncode == 0, done.stderr
    assert done.json["copied"] == 2 and done.json["verified"] is True
    assert lock_of(s3, "dst-lock", "contracts/2026.pdf") == ("COMPLIANCE", LATER, "ON")
    assert lock_of(s3, "dst-lock", "notes.txt") == (None, None, None)


# --- archived objects and restores ----------------------------------------------------------------

class Stop:
    """As threading.Event for wait_and_copy: `wait(seconds)` records the interval instead of sleeping."""

    def __init__(self, clock):
        self.clock, self.waits = clock, []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.now += seconds
        return False


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Restoring:
    """An S3 client whose objects finish restoring after `polls` HEADs each (moto restores at once),
    and which answers a second restore request as S3 does."""

    def __init__(self, polls: dict[str, int]):
        self.polls, self.requests = dict(polls), []

    def restore_object(self, Bucket, Key, RestoreRequest):
        from botocore.exceptions import ClientError

        self.requests.append(Key)
        if self.requests.count(Key) > 1:
            raise ClientError({"Error": {"Code": "RestoreAlreadyInProgress"}}, "RestoreObject")

    def head_object(self, Bucket, Key, **kwargs):
        self.polls[Key] -= 1
        done = 'ongoing-request="false"' if self.polls[Key] < 0 else 'ongoing-request="true"'
        return {"ContentLength": 1, "ETag": '"e"', "StorageClass": "GLACIER", "Restore": done}


def test_restores_are_asked_once_polled_at_a_growing_interval_and_copied_as_each_finishes():
    from ferry.s3.restore import RestoreTiming, start_restores, wait_and_copy

    objects = [Listed(k, 1, "e", "GLACIER") for k in ("quick", "slow", "slower")]
    s3 = Restoring({"quick": 0, "slow": 2, "slower": 9})
    assert start_restores(s3, "src", objects, 1, "Bulk") == objects
    assert start_restores(s3, "src", objects, 1, "Bulk") == objects  # a rerun: already in progress counts
    copied_in_turn = []

    def copy(ready):
        copied_in_turn.append([o.key for o in ready])
        return [type("Result", (), {"size": o.size})() for o in ready]

    clock = Clock()
    stop = Stop(clock)
    outcome = wait_and_copy(s3, "src", objects, copy, RestoreTiming(first_poll=10, longest_poll=40, wait=200),
                            stop=stop, clock=clock)

    assert copied_in_turn == [["quick"], ["slow"]]  # each as soon as its restore finished
    assert stop.waits == [10, 20, 40, 40, 40, 40]  # growing, then capped; the wait ends at its cap
    assert (outcome.started, outcome.copied, outcome.pending) == (3, 2, ["slower"])


def test_ferry_bucket_restore_restores_and_copies_archived_objects_and_bad_values_are_one_line(s3, run_ferry):
    s3.put_object(Bucket="src-bucket", Key="warm", Body=b"w")
    s3.put_object(Bucket="src-bucket", Key="cold/a", Body=b"a" * 100, StorageClass="GLACIER")

    for bad, named in ((["--restore", "0"], "--restore"), (["--restore", "1", "--restore-tier", "Fast"], "--restore-tier"),
                       (["--restore-tier", "Bulk"], "--restore-tier")):
        assert named in one_line_error(run_ferry("bucket", "src-bucket", "dst-bucket", *bad)), bad
    nothing_written(s3)

    done = run_ferry("bucket", "src-bucket", "dst-bucket", "--restore", "1", "--restore-tier", "Standard", "--json")

    assert done.returncode == 0, done.stderr
    assert (done.json["copied"], done.json["restores_started"], done.json["restored_copied"]) == (2, 1, 1)
    assert (done.json["archived"], done.json["restores_pending"], done.json["verified"]) == (0, 0, True)
    assert s3.head_object(Bucket="dst-bucket", Key="cold/a")["ContentLength"] == 100
