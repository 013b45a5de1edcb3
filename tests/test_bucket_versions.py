"""Versioned buckets: the default mode on a versioned source, and `--all-versions` (every version and
delete marker of every key, in order), its resume, its repairs, its live sync and its verification.

Histories are read back independently of Ferry's own listing code: moto keeps each key's versions
and delete markers in one ordered list, and paging ListObjectVersions one entry at a time walks it in
that order (a single response splits versions from delete markers, losing the order between them).
"""

from __future__ import annotations

import json
import os

import boto3
import pytest

from ferry.errors import BadInput, Stopped
from ferry.s3.versions import (VersionMap, check_versioning, iter_chains, recorded_all_versions, sync_versions,
                                verify_versions)
from lambdas.s3_versions import key_chain, sync_chain
from interleave import RunsFirst

MIB = 2**20
SMALL_THRESHOLD = ["--multipart-threshold", str(5 * MIB), "--part-size", str(5 * MIB)]


def versioned(s3, *buckets: str) -> None:
    for bucket in buckets:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def write(s3, key: str, *steps: bytes | None, bucket: str = "src-bucket") -> None:
    """Write a key's history: bytes are a version, None a delete (a delete marker)."""
    for body in steps:
        if body is None:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=body)


def upload_in_parts(s3, key: str, bucket: str = "src-bucket") -> None:
    """A version uploaded in two parts (5 MiB and 1 byte): its ETag is not an MD5, so the rule HEADs it."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    bodies = {1: bytes(5 * MIB), 2: b"!"}
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n,
                                                      Body=body)["ETag"]} for n, body in bodies.items()]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def history(s3, bucket: str, key: str) -> list:
    """The key's entries oldest first, as moto holds them: bytes for a version, None for a marker."""
    entries, request = [], {"Bucket": bucket, "Prefix": key, "MaxKeys": 1}
    while True:
        page = s3.list_object_versions(**request)
        for version in page.get("Versions", []):
            if version["Key"] == key:
                entries.append(s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Body"].read())
        entries += [None for marker in page.get("DeleteMarkers", []) if marker["Key"] == key]
        if not page.get("IsTruncated"):
            return entries[::-1]
        request.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])


def keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def all_keys(s3, bucket: str) -> set[str]:
    listed = s3.list_object_versions(Bucket=bucket)
    return {e["Key"] for e in listed.get("Versions", []) + listed.get("DeleteMarkers", [])}


def assert_same_histories(s3) -> None:
    assert all_keys(s3, "dst-bucket") == all_keys(s3, "src-bucket")
    for key in all_keys(s3, "src-bucket"):
        assert history(s3, "dst-bucket", key) == history(s3, "src-bucket", key), key


HISTORIES = {  # key: its history, oldest first (None: a delete)
    "doc.txt": [b"v1", b"v2-longer", b"v3"],
    "photos/gone.jpg": [b"jpeg", None],  # deleted: its current version is a delete marker
    "photos/back.jpg": [b"one", None, b"two", None, None, b"three"],  # recreated, markers in a row
}  # (a history that begins with a delete marker cannot be made on moto: it ignores a delete of a missing key)


def test_default_mode_copies_current_versions_and_a_delete_removes_delete_marked_keys(s3, run_ferry):
    versioned(s3, "src-bucket")
    for key, steps in HISTORIES.items():
        write(s3, key, *steps)
    s3.put_object(Bucket="dst-bucket", Key="photos/gone.jpg", Body=b"an earlier copy")

    ran = run_ferry("bucket", "src-bucket", "dst-bucket", "--delete", "--json")

    assert ran.returncode == 0, ran.stderr
    assert ran.json["verified"] is True and ran.json["copied"] == 2 and ran.json["deleted"] == 1
    assert ran.json["all_versions"] is False and ran.json["versions_copied"] == 0  # keys added, none renamed
    assert keys(s3, "dst-bucket") == {"doc.txt", "photos/back.jpg"}
    assert s3.get_object(Bucket="dst-bucket", Key="doc.txt")["Body"].read() == b"v3"
    assert s3.get_object(Bucket="dst-bucket", Key="photos/back.jpg")["Body"].read() == b"three"


def test_all_versions_copies_every_history_in_order_and_a_rerun_copies_nothing(s3, run_ferry):
    versioned(s3, "src-bucket", "dst-bucket")
    for key, steps in HISTORIES.items():
        write(s3, key, *steps)
    write(s3, "videos/a.mp4", b"small first")
    upload_in_parts(s3, "videos/a.mp4")  # above the 5 MiB threshold: copied in parts, pinned to its version
    write(s3, "videos/a.mp4", b"small again")
    versions = sum(1 for steps in HISTORIES.values() for body in steps if body is not None) + 3
    markers = sum(1 for steps in HISTORIES.values() for body in steps if body is None)

    ran = run_ferry("bucket", "src-bucket", "dst-bucket", "--all-versions", *SMALL_THRESHOLD, "--json")

    assert ran.returncode == 0, ran.stderr
    summary = ran.json
    assert summary["verified"] is True and summary["all_versions"] is True
    assert (summary["versions_copied"], summary["delete_markers_copied"]) == (versions, markers)
    assert summary["copied"] == versions and summary["version_map"] == versions + markers
    assert summary["source_objects"] == summary["target_objects"] == 3  # keys whose newest entry is a version
    assert_same_histories(s3)
    [big] = [v for v in s3.list_object_versions(Bucket="dst-bucket", Prefix="videos/")["Versions"]
             if v["Size"] == 5 * MIB + 1]
    assert big["ETag"].endswith('-2"')  # really copied in parts
    sqs = boto3.client("sqs")
    assert recorded_all_versions(sqs, sqs.get_queue_url(QueueName="ferry-sync-src-bucket-dst-bucket")["QueueUrl"])

    again = sync_versions(s3, s3, "src-bucket", "dst-bucket", multipart_threshold=5 * MIB, part_size=5 * MIB)
    assert (again.versions, again.markers, again.removed, again.planned) == (0, 0, 0, 0)
    assert again.found.equal and again.found.version_map == versions + markers


def test_all_versions_needs_an_enabled_target_and_a_versioned_source_and_writes_nothing_otherwise(s3):
    from ferry.config import BucketJob
    from ferry.plan import PlanBucket
    from ferry.s3.preflight import check_bucket_job

    job = BucketJob(source="src-bucket", target="dst-bucket", all_versions=True)
    with pytest.raises(BadInput, match="versioning Enabled on target bucket 'dst-bucket' .it is never enabled.") as e:
        check_bucket_job(job, s3, s3)
    assert "\n" not in str(e.value) and "put-bucket-versioning" in str(e.value)
    s3.put_bucket_versioning(Bucket="dst-bucket", VersioningConfiguration={"Status": "Suspended"})
    with pytest.raises(BadInput, match="it is suspended"):
        check_versioning(s3, s3, "src-bucket", "dst-bucket")
    versioned(s3, "dst-bucket")
    with pytest.raises(BadInput, match="source bucket 'src-bucket' has never been versioned.*drop --all-versions"):
        check_bucket_job(job, s3, s3)
    check_bucket_job(job.model_copy(update={"all_versions": False}), s3, s3)  # the default mode takes it
    versioned(s3, "src-bucket")
    check_bucket_job(job, s3, s3)
    assert all_keys(s3, "dst-bucket") == set() and boto3.client("sqs").list_queues().get("QueueUrls", []) == []
    assert PlanBucket(source="src-bucket", target="dst-bucket", all_versions=True).all_versions is True


class StopsAfterCopies:
    """An S3 client whose process dies after `copies` CopyObject requests reached S3 (the last one's
    answer lost on the way back, as in a kill at that moment)."""

    def __init__(self, client, copies: int):
        self.client, self.left = client, copies

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name != "copy_object":
            return attribute

        def copying(**kwargs):
            if self.left <= 0:
                raise Stopped("killed")
            self.left -= 1
            answer = attribute(**kwargs)
            if self.left == 0:
                raise Stopped("killed after the copy reached S3")
            return answer
        return copying


def test_a_history_copy_killed_part_way_resumes_with_nothing_duplicated(s3):
    versioned(s3, "src-bucket", "dst-bucket")
    for n in range(6):
        write(s3, f"k{n}", *[f"{n}-{i}".encode() * (i + 1) for i in range(4)], None, b"last")
    total_versions = 6 * 5

    with pytest.raises(Stopped):
        sync_versions(s3, StopsAfterCopies(s3, 11), "src-bucket", "dst-bucket", threads=3)
    copied = len(s3.list_object_versions(Bucket="dst-bucket").get("Versions", []))
    assert 11 <= copied < total_versions

    rerun = sync_versions(s3, s3, "src-bucket", "dst-bucket", threads=3)

    assert rerun.versions == total_versions - copied and rerun.removed == 0
    assert_same_histories(s3)
    assert len(s3.list_object_versions(Bucket="dst-bucket")["Versions"]) == total_versions
    # listed four entries a page (each key's six run over a page boundary): the same histories
    chains = dict(iter_chains(s3, "dst-bucket", page_size=4))
    assert {key: [e.marker for e in chain] for key, chain in chains.items()} == \
        {f"k{n}": [False] * 4 + [True, False] for n in range(6)}
    assert verify_versions(s3, s3, "src-bucket", "dst-bucket", page_size=4).equal


def test_diverged_histories_are_repaired_keeping_what_fits(s3):
    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "dup", b"a", b"b")
    write(s3, "dup", b"a", b"b", b"b", bucket="dst-bucket")  # two appliers both appended "b"
    write(s3, "expired", b"old", b"mid", None, b"new")
    write(s3, "expired", b"old", b"mid", None, bucket="dst-bucket")
    oldest = s3.list_object_versions(Bucket="src-bucket", Prefix="expired")["Versions"][-1]["VersionId"]
    s3.delete_object(Bucket="src-bucket", Key="expired", VersionId=oldest)  # a lifecycle rule expired it
    write(s3, "only-target", b"x", bucket="dst-bucket")
    kept = {v["VersionId"] for v in s3.list_object_versions(Bucket="dst-bucket", Prefix="expired")["Versions"]
            if s3.get_object(Bucket="dst-bucket", Key="expired", VersionId=v["VersionId"])["Body"].read() == b"mid"}

    synced = sync_versions(s3, s3, "src-bucket", "dst-bucket")

    assert (synced.versions, synced.markers, synced.removed) == (1, 0, 2)  # "new" appended; a "b" and "old" removed
    assert history(s3, "dst-bucket", "dup") == [b"a", b"b"]
    assert history(s3, "dst-bucket", "expired") == [b"mid", None, b"new"]
    assert kept <= {v["VersionId"] for v in s3.list_object_versions(Bucket="dst-bucket", Prefix="expired")["Versions"]}
    assert history(s3, "dst-bucket", "only-target") == [b"x"]  # not the source's: left alone without --delete

    with_delete = sync_versions(s3, s3, "src-bucket", "dst-bucket", delete=True)
    assert with_delete.removed == 1 and all_keys(s3, "dst-bucket") == {"dup", "expired"}


def test_live_sync_applies_versions_in_order_whatever_the_order_and_number_of_events(s3):
    from ferry.config import BucketJob
    from ferry.s3 import events
    from ferry.s3.lambda_sync import execution_policy
    from lambdas.s3_handler import handle
    from tasks.s3 import drain_bucket_events

    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "k", b"1")
    assert sync_chain(s3, "src-bucket", "dst-bucket", "k").versions == 1
    write(s3, "k", b"22", None, b"333")  # three events: created, delete marker created, created
    write(s3, "red flower.jpg", b"petals", None)

    def message(n: int, key: str) -> dict:
        body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "src-bucket"},
                                                                    "object": {"key": key}}}]}
        return {"messageId": f"m{n}", "body": json.dumps(body)}

    late_first = {"Records": [message(3, "k"), message(4, "red+flower.jpg"), message(1, "k"), message(2, "k")]}
    assert handle(late_first, s3, "dst-bucket", all_versions=True) == {"batchItemFailures": []}
    assert handle(late_first, s3, "dst-bucket", all_versions=True) == {"batchItemFailures": []}  # delivered twice
    assert history(s3, "dst-bucket", "k") == [b"1", b"22", None, b"333"]
    assert history(s3, "dst-bucket", "red flower.jpg") == [b"petals", None]

    # the poller: the bucket's own events through the pair's queue
    sqs = boto3.client("sqs")
    url, _, _ = events.route_to_queue(sqs, s3, boto3.client("events"), "src-bucket", "dst-bucket", "")
    write(s3, "k", None, b"4444")
    s3.delete_object(Bucket="src-bucket", Key="k", VersionId=s3.list_object_versions(
        Bucket="src-bucket", Prefix="k")["Versions"][-1]["VersionId"])  # the oldest version, permanently
    job = BucketJob(source="src-bucket", target="dst-bucket", all_versions=True)
    assert drain_bucket_events.fn(job, url, until_caught_up=True)["failed"] == 0
    assert history(s3, "dst-bucket", "k") == [b"22", None, b"333", None, b"4444"]

    policy = execution_policy("arn:aws:sqs:us-east-1:1:q", "src-bucket", "dst-bucket", "", "arn:aws:logs:x",
                              all_versions=True)
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert {"s3:ListBucketVersions", "s3:GetObjectVersion", "s3:DeleteObjectVersion"} <= actions


def test_verify_versions_names_keys_whose_history_differs_and_writes_the_version_map(s3, tmp_path):
    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "same", b"a", None, b"b")
    upload_in_parts(s3, "parts")
    for key in ("same", "parts"):
        sync_chain(s3, "src-bucket", "dst-bucket", key)
    write(s3, "reordered", b"a", None, b"b")
    write(s3, "reordered", b"a", b"b", None, bucket="dst-bucket")
    write(s3, "missing", b"m")
    write(s3, "extra", b"e", bucket="dst-bucket")
    mapping = VersionMap(tmp_path / "versions.csv")

    report = verify_versions(s3, s3, "src-bucket", "dst-bucket", mapped=mapping)
    mapping.close()

    summary = report.summary()
    assert summary["equal"] is False
    assert (summary["missing"], summary["extra"], summary["changed"]) == (["missing"], ["extra"], ["reordered"])
    assert (summary["source_versions"], summary["source_delete_markers"], summary["version_map"]) == (6, 2, 6)
    rows = mapping.path.read_text().splitlines()
    assert rows[0] == "key,position,kind,source_version_id,target_version_id" and len(rows) == 1 + 6
    source_ids = {e.version_id for e in key_chain(s3, "src-bucket", "same")}
    target_ids = [e.version_id for e in key_chain(s3, "dst-bucket", "same")]
    same_rows = sorted(row.split(",") for row in rows[1:] if row.startswith("same,"))
    assert [row[2] for row in same_rows] == ["version", "delete marker", "version"]
    assert {row[3] for row in same_rows} == source_ids and [row[4] for row in same_rows] == target_ids
    assert history(s3, "dst-bucket", "parts") == history(s3, "src-bucket", "parts")
    assert os.path.getsize(mapping.path) < 2000  # keys and IDs only


def test_an_archived_version_stops_its_keys_history_until_it_is_restored(s3):
    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "cold", b"warm first")
    s3.put_object(Bucket="src-bucket", Key="cold", Body=b"frozen", StorageClass="GLACIER")
    write(s3, "warm", b"w")

    first = sync_versions(s3, s3, "src-bucket", "dst-bucket")

    assert first.versions == 2 and history(s3, "dst-bucket", "cold") == [b"warm first"]  # nothing after it
    found = verify_versions(s3, s3, "src-bucket", "dst-bucket")
    assert (found.archived, found.archived_count, found.archived_bytes) == (["cold"], 1, 6)
    assert not found.equal and not found.verified(delete=False) and found.count("changed") == 0

    s3.restore_object(Bucket="src-bucket", Key="cold", RestoreRequest={"Days": 1})  # moto: the current version
    again = sync_versions(s3, s3, "src-bucket", "dst-bucket")
    assert again.versions == 1 and verify_versions(s3, s3, "src-bucket", "dst-bucket").equal
    assert s3.head_object(Bucket="dst-bucket", Key="cold")["StorageClass"] == "GLACIER"


def test_a_kms_encrypted_target_gets_one_version_per_source_version_with_the_etag_recorded(s3):
    """SSE-KMS ETags are not MD5s: the first copy of each version is replaced by one recording the
    source's ETag (a copy onto itself would be a second version), so the history keeps its length."""
    versioned(s3, "src-bucket", "dst-bucket")
    key = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    s3.put_bucket_encryption(Bucket="dst-bucket", ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
    s3.put_object(Bucket="src-bucket", Key="k", Body=b"one", Metadata={"owner": "ana"})
    write(s3, "k", b"two")

    assert sync_chain(s3, "src-bucket", "dst-bucket", "k").versions == 2

    assert history(s3, "dst-bucket", "k") == [b"one", b"two"]
    first = s3.head_object(Bucket="dst-bucket", Key="k", VersionId=key_chain(s3, "dst-bucket", "k")[0].version_id)
    assert first["Metadata"]["owner"] == "ana" and "ferry-source-etag" in first["Metadata"]
    assert sync_chain(s3, "src-bucket", "dst-bucket", "k").status == "unchanged"


def test_a_target_version_ferry_did_not_write_is_never_deleted_nor_buried(s3):
    """After a switch the service writes the new home: a late event of the old one must not delete
    the service's version (the only copy) nor append an older one on top of it."""
    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "k", b"1")
    assert sync_chain(s3, "src-bucket", "dst-bucket", "k").versions == 1
    write(s3, "k", b"service's own", bucket="dst-bucket")  # the service, in its new home
    write(s3, "k", b"2")  # a late write to the old home

    synced = sync_chain(s3, "src-bucket", "dst-bucket", "k")

    assert synced.status == "diverged" and (synced.versions, synced.removed) == (0, 0)
    assert history(s3, "dst-bucket", "k") == [b"1", b"service's own"]

    write(s3, "undeleted", b"1", None)  # an undelete: the source's delete marker removed
    assert sync_chain(s3, "src-bucket", "dst-bucket", "undeleted").markers == 1
    marker = s3.list_object_versions(Bucket="src-bucket", Prefix="undeleted")["DeleteMarkers"][0]["VersionId"]
    s3.delete_object(Bucket="src-bucket", Key="undeleted", VersionId=marker)
    assert sync_chain(s3, "src-bucket", "dst-bucket", "undeleted").removed == 1  # markers are Ferry's to delete
    assert history(s3, "dst-bucket", "undeleted") == [b"1"]


def test_tag_events_reach_the_current_version_when_histories_are_copied(s3):
    from lambdas.s3_handler import handle

    versioned(s3, "src-bucket", "dst-bucket")
    write(s3, "k", b"1")
    sync_chain(s3, "src-bucket", "dst-bucket", "k")
    s3.put_object_tagging(Bucket="src-bucket", Key="k", Tagging={"TagSet": [{"Key": "team", "Value": "web"}]})
    tagged = {"Records": [{"messageId": "t", "body": json.dumps({"Records": [{
        "eventName": "ObjectTagging:Put", "s3": {"bucket": {"name": "src-bucket"}, "object": {"key": "k"}}}]})}]}

    assert handle(tagged, s3, "dst-bucket", all_versions=True) == {"batchItemFailures": []}

    assert s3.get_object_tagging(Bucket="dst-bucket", Key="k")["TagSet"] == [{"Key": "team", "Value": "web"}]
    assert history(s3, "dst-bucket", "k") == [b"1"]  # no version added for a tag change


def test_a_copied_history_carries_the_current_versions_grants_where_acls_are_enabled(s3):
    from lambdas.s3_copy import CopySettings

    versioned(s3, "src-bucket", "dst-bucket")
    for bucket in ("src-bucket", "dst-bucket"):
        s3.delete_bucket_ownership_controls(Bucket=bucket)
    write(s3, "site/index.html", b"old")
    s3.put_object(Bucket="src-bucket", Key="site/index.html", Body=b"new", ACL="public-read")
    write(s3, "gone", b"x", None)  # its current version a delete marker: no ACL to carry

    for key in ("site/index.html", "gone"):
        assert sync_chain(s3, "src-bucket", "dst-bucket", key, settings=CopySettings(acls=True)).status == "synced"

    public = [g["Permission"] for g in s3.get_object_acl(Bucket="dst-bucket", Key="site/index.html")["Grants"]
              if g["Grantee"].get("URI", "").endswith("AllUsers")]
    assert public == ["READ"]
    assert history(s3, "dst-bucket", "site/index.html") == [b"old", b"new"]
    assert history(s3, "dst-bucket", "gone") == [b"x", None]


def target_versions(s3, key: str) -> list[str]:
    """The target's version IDs of `key`, oldest first."""
    return [v["VersionId"] for v in s3.list_object_versions(Bucket="dst-bucket", Prefix=key)["Versions"]][::-1]


def test_a_version_written_meanwhile_does_not_lend_its_grants_or_tags_to_the_older_copy(s3):
    """The current version's grants and tags are read and written pinned to the versions the equal
    chains end with: a newer source version (its own event follows) never dresses the older copy."""
    from lambdas.s3_apply import sync_history
    from lambdas.s3_copy import CopySettings

    versioned(s3, "src-bucket", "dst-bucket")
    for bucket in ("src-bucket", "dst-bucket"):
        s3.delete_bucket_ownership_controls(Bucket=bucket)
    s3.put_object(Bucket="src-bucket", Key="page", Body=b"v1", Tagging="stage=draft")
    racing = RunsFirst(s3, "get_object_acl",  # the service writes v2 between the history copy and the grants
                       lambda: s3.put_object(Bucket="src-bucket", Key="page", Body=b"v2", ACL="public-read"))
    assert sync_chain(racing, "src-bucket", "dst-bucket", "page", settings=CopySettings(acls=True)).status == "synced"
    assert racing.ran == 1
    (old,) = target_versions(s3, "page")
    assert [g for g in s3.get_object_acl(Bucket="dst-bucket", Key="page", VersionId=old)["Grants"]
            if g["Grantee"].get("URI")] == []  # v1 is private in the source: so is its copy

    racing = RunsFirst(s3, "get_object_tagging",
                       lambda: s3.put_object(Bucket="src-bucket", Key="page", Body=b"v3", Tagging="stage=live"))
    sync_history(racing, "src-bucket", "dst-bucket", "page", ["object", "tags"], CopySettings(acls=True))
    assert racing.ran == 1
    newest = target_versions(s3, "page")[-1]
    assert s3.get_object_tagging(Bucket="dst-bucket", Key="page", VersionId=newest)["TagSet"] == []  # v2's: none
    # (not v3's: v3 has an event of its own)
    sync_history(s3, "src-bucket", "dst-bucket", "page", ["object"], CopySettings(acls=True))  # v3's event
    assert history(s3, "dst-bucket", "page") == [b"v1", b"v2", b"v3"]
    assert s3.get_object_tagging(Bucket="dst-bucket", Key="page")["TagSet"] == [{"Key": "stage", "Value": "live"}]
