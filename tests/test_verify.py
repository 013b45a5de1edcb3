"""Verification names every difference exactly, repairs it, and ignores changes in flight."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import sys

import boto3
import pytest

from ferry import report as reports
from ferry.dynamo import verify
from ferry.dynamo.verify import sample_tables, verify_tables
from lambdas.dynamo_apply import key_identity
from tables import create_table, put_items, scan_all


def order(i: int) -> dict:
    return {"pk": {"S": f"order#{i:04d}"}, "sk": {"N": str(i % 5)}, "status": {"S": "paid"},
            "total": {"N": "12345678901234567890123456789012345678"}, "tags": {"SS": ["a", "b"]}}


def migrated_pair(dynamodb, count: int = 400) -> list[dict]:
    items = [order(i) for i in range(count)]
    for table in ("src", "dst"):
        create_table(dynamodb, table, ("pk", "S"), ("sk", "N"))
        put_items(dynamodb, table, items)
    return items


def key(item: dict) -> dict:
    return {"pk": item["pk"], "sk": item["sk"]}


def as_set(keys: list[dict]) -> set[str]:
    return {key_identity(k) for k in keys}


def test_verify_names_exactly_the_corrupted_keys_and_repair_makes_the_tables_equal(dynamodb, run_ferry, tmp_path):
    items = migrated_pair(dynamodb)
    changed = [items[3], items[50], items[101]]
    for item in changed:
        dynamodb.put_item(TableName="dst", Item={**item, "status": {"S": "lost"}})
    set_changed = {**items[7], "tags": {"SS": ["a", "c"]}}
    digit_changed = {**items[8], "total": {"N": "12345678901234567890123456789012345679"}}  # the 38th digit
    dynamodb.put_item(TableName="dst", Item=set_changed)
    dynamodb.put_item(TableName="dst", Item=digit_changed)
    missing = [items[10], items[200], items[399]]
    for item in missing:
        dynamodb.delete_item(TableName="dst", Key=key(item))
    extra = [order(1000 + i) for i in range(3)]
    put_items(dynamodb, "dst", extra)

    found = run_ferry("verify", "table", "src", "dst", "--json")

    assert found.returncode == 1, found.stderr
    result = found.json
    assert result["equal"] is False
    assert as_set(result["missing"]) == as_set([key(i) for i in missing]) and result["missing_count"] == 3
    assert as_set(result["extra"]) == as_set([key(i) for i in extra]) and result["extra_count"] == 3
    assert as_set(result["changed"]) == as_set([key(i) for i in changed + [set_changed, digit_changed]])
    assert result["changed_count"] == 5

    repaired = run_ferry("verify", "table", "src", "dst", "--repair", "--report-dir", str(tmp_path), "--json")

    assert repaired.returncode == 0, repaired.stderr
    assert repaired.json["repaired"] == 11 and repaired.json["remaining_after_repair"] == 0
    again = run_ferry("verify", "table", "src", "dst", "--json")
    assert again.returncode == 0 and again.json["equal"] is True
    assert again.json["missing_count"] == again.json["extra_count"] == again.json["changed_count"] == 0
    markdown = next(tmp_path.glob("*.md")).read_text()
    assert "11 changed" not in markdown and "3 missing, 3 extra, 5 changed" in markdown
    assert "order#0010" in next(tmp_path.glob("*-differences.csv")).read_text()
    assert len(next(tmp_path.glob("*-ranges.csv")).read_text().splitlines()) == 1 + reports.REPORT_GROUPS


KEY_SCHEMAS = [
    (("id", "S"), None),
    (("id", "N"), None),
    (("id", "B"), None),
    (("id", "S"), ("at", "N")),
    (("id", "N"), ("at", "B")),
    (("id", "B"), ("at", "S")),
]


def key_value(type_: str, i: int):
    return {"S": f"k-{i} ü", "N": str(10**37 + i), "B": bytes([i, 0, 255])}[type_]


@pytest.mark.parametrize("hash_key, range_key", KEY_SCHEMAS)
def test_keys_of_every_type_are_reported_exactly_in_dynamodb_json(dynamodb, hash_key, range_key):
    names = [hash_key[0]] + ([range_key[0]] if range_key else [])

    def item(i):
        item = {hash_key[0]: {hash_key[1]: key_value(hash_key[1], i)}, "v": {"N": str(i)}}
        if range_key:
            item[range_key[0]] = {range_key[1]: key_value(range_key[1], i + 1)}
        return item

    items = [item(i) for i in range(60)]
    for table in ("src", "dst"):
        create_table(dynamodb, table, hash_key, range_key)
        put_items(dynamodb, table, items)
    gone = {k: items[5][k] for k in names}
    dynamodb.delete_item(TableName="dst", Key=gone)

    segments = 1 if hash_key[1] == "B" else 2  # moto fails segmented scans on binary hash keys
    report = verify_tables(dynamodb, dynamodb, "src", "dst", names, segments=segments)
    summary = json.loads(json.dumps(reports.summary(report)))

    assert summary["missing"] == [json.loads(json.dumps(reports.dynamodb_json(gone)))]
    for name, type_ in [hash_key] + ([range_key] if range_key else []):
        value = summary["missing"][0][name][type_]
        expected = key_value(type_, 5 if name == hash_key[0] else 6)
        assert (base64.b64decode(value) if type_ == "B" else value) == expected


class StaleScans:
    """A target whose scans see an old version of some items (replication in flight), while
    consistent reads see the current one."""

    def __init__(self, client, stale: dict):
        self.client, self.stale = client, stale

    def get_paginator(self, name):
        real = self.client.get_paginator(name)
        stale = self.stale

        class Paginator:
            def paginate(self, **kwargs):
                for page in real.paginate(**kwargs):
                    yield {**page, "Items": [stale.get(key_identity({"pk": i["pk"], "sk": i["sk"]}), i)
                                             for i in page["Items"]]}

        return Paginator()

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_change_in_flight_is_dismissed_by_the_consistent_reread(dynamodb):
    items = migrated_pair(dynamodb, 100)
    old = {**items[4], "status": {"S": "before the last write"}}
    target = StaleScans(dynamodb, {key_identity(key(items[4])): old})

    report = verify_tables(dynamodb, target, "src", "dst", ["pk", "sk"], segments=2)

    assert report.equal is True
    assert report.differences == [] and report.dismissed == 1
    assert len(report.differing_buckets) == 1  # the hash tree did see it, and looked


def test_a_difference_that_heals_before_the_recheck_is_not_reported(dynamodb):
    items = migrated_pair(dynamodb, 20)
    dynamodb.put_item(TableName="dst", Item={**items[2], "status": {"S": "lagging"}})

    def live_sync_catches_up(seconds):
        dynamodb.put_item(TableName="dst", Item=items[2])

    differences, dismissed = verify.confirm(dynamodb, dynamodb, "src", "dst", [key(items[2])],
                                            sleep=live_sync_catches_up)
    assert differences == [] and dismissed == 1


def test_a_difference_live_sync_is_slow_to_heal_waits_for_live_sync_not_a_fixed_delay(dynamodb):
    items = migrated_pair(dynamodb, 20)
    dynamodb.put_item(TableName="dst", Item={**items[2], "status": {"S": "lagging"}})
    settled = []

    def live_sync_catches_up():  # a lag far beyond the fixed delays: it applies only when waited for
        settled.append(True)
        dynamodb.put_item(TableName="dst", Item=items[2])

    slow = verify.confirm(dynamodb, dynamodb, "src", "dst", [key(items[2])], sleep=lambda seconds: None)
    healed = verify.confirm(dynamodb, dynamodb, "src", "dst", [key(items[2])], sleep=lambda seconds: None,
                            settle=live_sync_catches_up)

    assert len(slow[0]) == 1  # without waiting for live sync, the lag looks like a difference
    assert healed == ([], 1) and settled == [True]


def test_a_key_the_service_keeps_writing_is_read_until_its_source_holds_still(dynamodb):
    items = migrated_pair(dynamodb, 20)
    hot, stale = items[2], items[5]
    dynamodb.put_item(TableName="dst", Item={**stale, "status": {"S": "lost"}})  # a real difference
    dynamodb.put_item(TableName="src", Item={**hot, "status": {"S": "w0"}})  # not applied yet
    writes = []

    def service_and_lagging_live_sync(seconds):
        n = len(writes)
        if n < 4:  # the service writes the hot key again; live sync has applied only the write before
            dynamodb.put_item(TableName="dst", Item={**hot, "status": {"S": f"w{n}"}})
            dynamodb.put_item(TableName="src", Item={**hot, "status": {"S": f"w{n + 1}"}})
        else:  # the service stopped; live sync caught up
            dynamodb.put_item(TableName="dst", Item={**hot, "status": {"S": "w4"}})
        writes.append(seconds)

    differences, dismissed = verify.confirm(dynamodb, dynamodb, "src", "dst", [key(hot), key(stale)],
                                            sleep=service_and_lagging_live_sync)

    assert [d.key for d in differences] == [key(stale)] and dismissed == 1
    assert len(writes) > len(verify.RECHECK_DELAYS)  # the hot key was read past the planned re-reads


def test_a_key_still_changing_after_every_re_read_is_reported_not_dismissed(dynamodb):
    items = migrated_pair(dynamodb, 20)
    hot = items[2]
    dynamodb.put_item(TableName="src", Item={**hot, "status": {"S": "w0"}})
    reads = []

    def service_never_stops(seconds):  # and live sync never applies it
        reads.append(seconds)
        dynamodb.put_item(TableName="src", Item={**hot, "status": {"S": f"w{len(reads)}"}})

    differences, dismissed = verify.confirm(dynamodb, dynamodb, "src", "dst", [key(hot)], sleep=service_never_stops)

    assert [d.key for d in differences] == [key(hot)] and dismissed == 0
    assert len(reads) == len(verify.RECHECK_DELAYS) + verify.FLUX_ROUNDS


def replicate_writes(stop, written) -> None:
    """The service writing to the source and live sync copying each write a moment later."""
    client = boto3.client("dynamodb")
    n = 0
    while not stop.is_set():
        item = {**order(n % 2000), "status": {"S": f"update-{n}"}}
        client.put_item(TableName="src", Item=item)
        client.put_item(TableName="dst", Item=item)
        n += 1
        written.value = n


def test_live_writes_during_verify_give_no_false_differences(dynamodb):
    import multiprocessing

    migrated_pair(dynamodb, 2000)
    # Another process, as the service and live sync are: a thread here would starve on the GIL
    # while verification hashes, and the test would prove nothing.
    stop, written = multiprocessing.Event(), multiprocessing.Value("i", 0)
    writer = multiprocessing.Process(target=replicate_writes, args=(stop, written))
    writer.start()
    try:
        while written.value == 0:  # the writer is running before the verification starts
            time.sleep(0.01)
        before = written.value
        report = verify_tables(dynamodb, dynamodb, "src", "dst", ["pk", "sk"], segments=4)
        during = written.value - before
    finally:
        stop.set()
        writer.join()
    assert during >= 5, f"only {during} writes happened while the tables were verified"
    assert report.equal is True, reports.headline(report)
    assert report.differences == []


def test_sample_checks_a_fraction_and_says_so(dynamodb):
    items = migrated_pair(dynamodb, 2000)
    for item in items[::10]:
        dynamodb.put_item(TableName="dst", Item={**item, "status": {"S": "corrupt"}})

    report = sample_tables(dynamodb, dynamodb, "src", "dst", ["pk", "sk"], fraction=0.25, seed=1)

    assert report.sampled == 0.25 and report.equal is False
    assert 250 <= report.sampled_items <= 750  # about a quarter of the 2,000 keys
    corrupt = as_set([key(i) for i in items[::10]])
    assert 0 < len(report.differences) < 200
    assert as_set(report.keys("changed")) <= corrupt
    summary = reports.summary(report)
    assert summary["sampled"] == 0.25 and summary["sampled_items"] == report.sampled_items


def test_scheduled_verify_flow_fails_its_run_when_differences_remain(dynamodb, run_ferry):
    items = migrated_pair(dynamodb, 50)
    dynamodb.delete_item(TableName="dst", Key=key(items[0]))
    code = "from flows.verify_table import verify_table; verify_table(source='src', target='dst')"

    run = subprocess.run([sys.executable, "-c", code], env=run_ferry.env(), capture_output=True, text=True, timeout=120)

    assert run.returncode != 0
    assert "DifferencesRemain" in run.stderr and "1 missing" in run.stderr
    repaired = subprocess.run([sys.executable, "-c", code.replace("target='dst'", "target='dst', repair=True")],
                              env=run_ferry.env(), capture_output=True, text=True, timeout=120)
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert len(scan_all(dynamodb, "dst")) == 50


class LiveSyncRacesTheRepair:
    """The target's client, as live sync sees it: just before the repair's write of `key` lands, the
    source changes again and live sync applies the change to the target (the interleaving that made
    an unconditional repair overwrite a newer state)."""

    def __init__(self, client, key: dict, newer: dict):
        self.client, self.key, self.newer, self.raced = client, key, newer, False

    def race(self, items: list[dict]) -> None:
        if not self.raced and any({k: item.get(k) for k in self.key} == self.key for item in items):
            self.raced = True
            self.client.put_item(TableName="src", Item=self.newer)  # the service writes the source ...
            self.client.put_item(TableName="dst", Item=self.newer)  # ... and live sync applies it

    def put_item(self, **request):
        self.race([request["Item"]])
        return self.client.put_item(**request)

    def batch_write_item(self, **request):  # how repairs were written before
        self.race([w["PutRequest"]["Item"] for writes in request["RequestItems"].values() for w in writes
                   if "PutRequest" in w])
        return self.client.batch_write_item(**request)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_repair_never_leaves_an_older_state_over_a_change_live_sync_applied_meanwhile(dynamodb):
    items = migrated_pair(dynamodb, 50)
    stale = {**items[7], "status": {"S": "stale in the target"}}
    dynamodb.put_item(TableName="dst", Item=stale)
    newer = {**items[7], "status": {"S": "changed while the repair ran"}}
    target = LiveSyncRacesTheRepair(dynamodb, key(items[7]), newer)

    report = verify_tables(dynamodb, target, "src", "dst", ["pk", "sk"], segments=2, fix=True)

    assert target.raced  # the race happened
    assert report.repaired == 1 and report.equal, reports.headline(report)
    assert dynamodb.get_item(TableName="dst", Key=key(items[7]), ConsistentRead=True)["Item"] == newer


def test_items_past_their_ttl_count_as_absent_on_both_sides_and_are_counted(dynamodb):
    from ferry.report import headline, summary

    for table in ("src", "dst"):
        create_table(dynamodb, table)
    past, future = str(int(time.time()) - 3600), str(int(time.time()) + 86_400)
    live = {"pk": {"S": "live"}, "expires": {"N": future}, "v": {"S": "1"}}
    both = [live, {"pk": {"S": "both"}, "expires": {"N": past}, "v": {"S": "1"}}]
    for item in both:
        dynamodb.put_item(TableName="src", Item=item)
        dynamodb.put_item(TableName="dst", Item=item)
    # expired, and deleted by DynamoDB on one side only so far
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "gone-from-target"}, "expires": {"N": past}})
    dynamodb.put_item(TableName="dst", Item={"pk": {"S": "gone-from-source"}, "expires": {"N": past}})
    dynamodb.put_item(TableName="dst", Item={"pk": {"S": "not-a-number"}, "expires": {"S": past}})  # TTL ignores it
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "not-a-number"}, "expires": {"S": past}})
    ancient = {"pk": {"S": "ancient"}, "expires": {"N": "1000"}}  # older than five years: TTL never deletes it
    dynamodb.put_item(TableName="src", Item=ancient)

    without = verify_tables(dynamodb, dynamodb, "src", "dst", ["pk"], segments=2)
    report = verify_tables(dynamodb, dynamodb, "src", "dst", ["pk"], segments=2, ttl_attribute="expires")

    assert not without.equal and len(without.differences) == 3
    assert report.keys("missing") == [{"pk": {"S": "ancient"}}]
    assert (report.source_items, report.target_items) == (3, 2)
    assert (report.source_expired, report.target_expired) == (2, 2)
    assert summary(report)["expired"] == {"source": 2, "target": 2} and "past their TTL" in headline(report)
    dynamodb.put_item(TableName="dst", Item=ancient)
    assert verify_tables(dynamodb, dynamodb, "src", "dst", ["pk"], segments=2, ttl_attribute="expires").equal


def test_ferry_verify_table_leaves_out_what_both_tables_ttl_has_expired(dynamodb, run_ferry):
    for table in ("src", "dst"):
        create_table(dynamodb, table)
    dynamodb.update_time_to_live(TableName="src", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "expired"}, "ttl": {"N": str(int(time.time()) - 60)}})

    target_without_ttl = run_ferry("verify", "table", "src", "dst", "--json")
    dynamodb.update_time_to_live(TableName="dst", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    result = run_ferry("verify", "table", "src", "dst", "--json")

    assert target_without_ttl.returncode == 1 and target_without_ttl.json["missing_count"] == 1  # it would stay
    assert result.returncode == 0, result.stderr
    assert result.json["equal"] is True and result.json["expired"] == {"source": 1, "target": 0}


def test_a_verification_result_leaving_its_task_names_keys_and_holds_no_item(dynamodb, run_ferry):
    """A flow's result may be persisted (result storage, PREFECT_RESULTS_PERSIST_BY_DEFAULT): it must
    not carry the items the verification re-read for its repair."""
    migrated_pair(dynamodb, 50)
    dynamodb.put_item(TableName="dst", Item={**order(7), "status": {"S": "tampered"}})
    dynamodb.delete_item(TableName="dst", Key={"pk": order(8)["pk"], "sk": order(8)["sk"]})
    result = run_ferry.python("""
from flows.verify_table import verify_table
report = verify_table(source="src", target="dst", fail_on_difference=False)
print(len(report.differences), sum(d.source_item is not None for d in report.differences))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["2", "0"]
