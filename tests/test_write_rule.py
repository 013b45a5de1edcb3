"""The one write rule: the backfill and live sync write the same target in any order, and the newest
state of every key wins; a deleted key is never brought back. Driven deterministically, write by write."""

from __future__ import annotations

import pytest

from ferry.dynamo.backfill import clear_markers
from ferry.dynamo.verify import verify_tables
from lambdas.write_rule import DELETED, VERSION, Change, apply_change, put_scanned, visible
from tables import create_table, scan_all

KEY = {"pk": {"S": "k"}}


def image(value: str) -> dict:
    return {**KEY, "v": {"S": value}}


def target_state(dynamodb) -> dict | None:
    return dynamodb.get_item(TableName="dst", Key=KEY, ConsistentRead=True).get("Item")


@pytest.fixture
def target(dynamodb):
    create_table(dynamodb, "dst")
    return dynamodb


# The source's history of one key: scanned by the backfill at some moment, and changed by three
# stream records (sequence numbers 10, 20, 30), the last a delete or a put.
HISTORIES = [(last, scanned_after) for last in ("put", "delete") for scanned_after in range(4)
             if not (last == "delete" and scanned_after == 3)]  # a deleted key is not scanned


@pytest.mark.parametrize("last, scanned_after", HISTORIES, ids=[f"{l}-scanned-after-{n}" for l, n in HISTORIES])
def test_every_interleaving_of_backfill_and_live_sync_ends_in_the_last_state(target, last, scanned_after):
    changes = [Change(KEY, "10", image("v1")), Change(KEY, "20", image("v2")),
               Change(KEY, "30", image("v3") if last == "put" else None)]
    states = [image("v0"), image("v1"), image("v2"), changes[2].image]
    scanned = states[scanned_after]
    writes = [("backfill", scanned)] + [("live", change) for change in changes]
    final = states[-1]
    # every order in which the writes can land, live sync keeping its own order, plus duplicates
    # of live-sync writes (a retried batch) at the end
    for position in range(len(writes)):
        order = writes[1:]
        order.insert(position, writes[0])
        for extra in ([], [writes[1], writes[2]]):
            target.delete_item(TableName="dst", Key=KEY)
            for kind, what in order + extra:
                if kind == "backfill":
                    put_scanned(target, "dst", what)
                else:
                    apply_change(target, "dst", what, guarded=True)
            assert visible(target_state(target)) == final, (order, extra)


def test_an_older_change_replayed_later_is_refused_and_says_so(target):
    assert apply_change(target, "dst", Change(KEY, "20", image("new")), guarded=True)
    assert not apply_change(target, "dst", Change(KEY, "10", image("old")), guarded=True)
    assert not apply_change(target, "dst", Change(KEY, "20", image("new")), guarded=True)  # a duplicate
    assert target_state(target) == {**image("new"), VERSION: {"S": "20".zfill(40)}}


def test_a_delete_leaves_a_tombstone_that_verification_counts_as_absent(target, dynamodb):
    create_table(dynamodb, "src")
    dynamodb.put_item(TableName="src", Item={"pk": {"S": "kept"}, "v": {"S": "1"}})
    dynamodb.put_item(TableName="dst", Item={"pk": {"S": "kept"}, "v": {"S": "1"}})
    apply_change(target, "dst", Change(KEY, "40", None), guarded=True)
    assert not put_scanned(target, "dst", image("resurrected?"))

    assert target_state(target) == {**KEY, VERSION: {"S": "40".zfill(40)}, DELETED: {"BOOL": True}}
    report = verify_tables(dynamodb, dynamodb, "src", "dst", ["pk"], segments=2)
    assert report.equal and report.target_items == 1


def test_plain_writes_after_the_backfill_and_markers_cleared_only_where_unchanged(target):
    for n, change in enumerate([Change({"pk": {"S": f"k{n}"}}, str(10 + n), None if n % 2 else {"pk": {"S": f"k{n}"}})
                                for n in range(6)]):
        apply_change(target, "dst", change, guarded=True)
    # live sync, now plain, rewrites k0 and k1 after the switch: their markers are gone already
    apply_change(target, "dst", Change({"pk": {"S": "k0"}}, "90", {"pk": {"S": "k0"}, "v": {"S": "plain"}}), False)
    apply_change(target, "dst", Change({"pk": {"S": "k1"}}, "91", {"pk": {"S": "k1"}, "v": {"S": "back"}}), False)

    cleared = clear_markers(target, "dst", ["pk"], segments=2)

    assert cleared == 4  # k2..k5; k0 and k1 were rewritten plainly
    items = {i["pk"]["S"]: i for i in scan_all(target, "dst")}
    assert sorted(items) == ["k0", "k1", "k2", "k4"]  # the tombstones of k3 and k5 are gone
    assert not any(name in item for item in items.values() for name in (VERSION, DELETED))
    assert items["k1"]["v"] == {"S": "back"}
    assert clear_markers(target, "dst", ["pk"], segments=2) == 0  # a rerun finds nothing


def test_a_scanned_item_overwrites_an_earlier_backfill_image_but_not_a_live_one(target):
    assert put_scanned(target, "dst", image("first run"))
    assert put_scanned(target, "dst", image("rerun"))  # the backfill's own, older image
    assert visible(target_state(target)) == image("rerun")
    apply_change(target, "dst", Change(KEY, "5", image("live")), guarded=True)
    assert not put_scanned(target, "dst", image("stale"))
    assert visible(target_state(target)) == image("live")


def test_versions_compare_as_numbers_even_with_sequence_numbers_of_different_lengths(target):
    # 21 digits, then 40: beyond what a number attribute holds (38 significant digits)
    assert apply_change(target, "dst", Change(KEY, "9" * 21, image("older")), guarded=True)
    assert apply_change(target, "dst", Change(KEY, "1" + "0" * 39, image("newer")), guarded=True)
    assert not apply_change(target, "dst", Change(KEY, "9" * 21, image("older")), guarded=True)
    assert visible(target_state(target)) == image("newer")
