"""The one write rule: the backfill and live sync write the same target in any order, and the newest
state of every key wins; a deleted key is never brought back. Driven deterministically, write by write."""

from __future__ import annotations

import pytest

from ferry.dynamo.backfill import JournalWrites, LiveWrites, clear_markers, rewrite_live_written, versioned_keys
from ferry.dynamo.verify import verify_tables
from ferry.state import StateStore
from lambdas import journal
from lambdas.batch_write import put_requests, write_all
from lambdas.dynamo_apply import key_identity
from lambdas.write_rule import DELETED, VERSION, Change, apply_change, visible
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
class LiveSync:
    """The source changing, and live sync applying the change (noted before its write is sent: in
    this process, or in the journal as the Lambda does)."""

    def __init__(self, source, target, note):
        self.source, self.target, self.note, self.pending = source, target, note, []

    def change(self, sequence: str, value: str | None) -> None:
        if value is None:
            self.source.delete_item(TableName="src", Key=KEY)
        else:
            self.source.put_item(TableName="src", Item=image(value))
        self.note([(KEY, sequence)])
        self.pending.append(Change(KEY, sequence, None if value is None else image(value)))

    def lands(self) -> None:
        apply_change(self.target, "dst", self.pending.pop(0), guarded=True)


LANDS = ["before-the-scan", "before-the-batch", "between-batch-and-rewrite", "after-the-rewrite"]


@pytest.mark.parametrize("noted", ["in-process", "in-the-journal"])
@pytest.mark.parametrize("last", ["put", "delete"])
@pytest.mark.parametrize("lands", LANDS)
def test_a_page_and_a_live_change_in_any_order_end_in_the_sources_state(target, last, lands, noted):
    create_table(target, "src")
    source = target
    if noted == "in-process":  # the poller, beside the backfill
        live = LiveWrites()
        note = live.note
    else:  # the Lambda, in another process: what its handler does before writing
        StateStore(target, "ferry-state").ensure_table()
        live = JournalWrites(target, "ferry-state", "table:src>dst")
        note = lambda changes: journal.note(target, "ferry-state", "table:src>dst", changes)  # noqa: E731
    source.put_item(TableName="src", Item=image("v0"))
    sync = LiveSync(source, target, note)
    value = "v1" if last == "put" else None
    if lands == "before-the-scan":
        sync.change("10", value)
        sync.lands()
    began = live.page_begins()
    scanned = source.get_item(TableName="src", Key=KEY, ConsistentRead=True).get("Item")  # the page's scan
    if lands != "before-the-scan":
        sync.change("10", value)  # after the scan: the page holds the older image
    if lands == "before-the-batch":
        sync.lands()
    if scanned is not None:
        write_all(target, "dst", put_requests([scanned]))
    if lands == "between-batch-and-rewrite":
        sync.lands()
    rewrite_live_written(source, target, "src", "dst", live.written_since([KEY], began))
    live.page_done(began)
    if lands == "after-the-rewrite":
        sync.lands()

    now_in_source = source.get_item(TableName="src", Key=KEY, ConsistentRead=True).get("Item")
    assert visible(target_state(target)) == now_in_source
    apply_change(target, "dst", Change(KEY, "10", None if value is None else image(value)), guarded=True)  # retried
    assert visible(target_state(target)) == now_in_source


def test_live_writes_are_kept_only_while_a_page_that_began_before_them_is_in_flight():
    clock = iter(range(100)).__next__
    live = LiveWrites(clock=lambda: float(clock()))
    first = live.page_begins()  # t=0
    live.note([({"pk": {"S": "a"}}, "5")])  # t=1
    second = live.page_begins()  # t=2
    live.note([({"pk": {"S": "b"}}, "7"), ({"pk": {"S": "a"}}, "3")])  # t=3: a's highest stays 5
    assert live.written_since([{"pk": {"S": "a"}}, {"pk": {"S": "b"}}], second) == [
        ({"pk": {"S": "a"}}, "5"), ({"pk": {"S": "b"}}, "7")]
    live.page_done(first)
    live.page_done(second)  # no page in flight: nothing to keep
    assert live.noted == {}


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
    assert not apply_change(target, "dst", Change(KEY, "30", image("older")), guarded=True)

    assert target_state(target) == {**KEY, VERSION: {"S": "40".zfill(40)}, DELETED: {"BOOL": True}}
    report = verify_tables(dynamodb, dynamodb, "src", "dst", ["pk"], segments=2)
    assert report.equal and report.target_items == 1
    assert versioned_keys(target, "dst", [KEY, {"pk": {"S": "kept"}}], ["pk"]) == {key_identity(KEY)}


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


def test_versions_compare_as_numbers_even_with_sequence_numbers_of_different_lengths(target):
    # 21 digits, then 40: beyond what a number attribute holds (38 significant digits)
    assert apply_change(target, "dst", Change(KEY, "9" * 21, image("older")), guarded=True)
    assert apply_change(target, "dst", Change(KEY, "1" + "0" * 39, image("newer")), guarded=True)
    assert not apply_change(target, "dst", Change(KEY, "9" * 21, image("older")), guarded=True)
    assert visible(target_state(target)) == image("newer")


def test_a_scan_that_fails_does_not_hold_notes_back_and_no_note_is_kept_with_no_page_in_flight():
    live = LiveWrites()
    live.note([({"pk": {"S": "a"}}, "1")])  # no page in flight: a later page needs none
    assert live.noted == {}
    began = live.page_begins()
    live.note([({"pk": {"S": "b"}}, "2")])
    assert list(live.noted)
    live.page_done(began)  # what scan_page does when its Scan raises
    assert live.open_pages == [] and live.noted == {}


def test_a_page_whose_rewrite_fails_once_retries_the_rewrite_and_no_deleted_key_comes_back(target):
    from ferry.dynamo.backfill import copy_segment
    from ferry.state import SegmentProgress

    create_table(target, "src")
    for n in range(5):
        target.put_item(TableName="src", Item={"pk": {"S": f"k{n}"}, "v": {"S": "old"}})
    live = LiveWrites()
    deleted = {"pk": {"S": "k3"}}

    class DeletedAfterTheScan:  # the source, where k3 is deleted (and live-synced) once the page is scanned
        def __getattr__(self, name):
            return getattr(target, name)

        def scan(self, **kwargs):
            page = target.scan(**kwargs)
            target.delete_item(TableName="src", Key=deleted)
            live.note([(deleted, "77")])
            apply_change(target, "dst", Change(deleted, "77", None), guarded=True)  # a tombstone, then the batch
            return page

    class FailsOnce:  # the notes, unreadable once (as a throttled journal read would be)
        failed = False

        def __getattr__(self, name):
            return getattr(live, name)

        def written_since(self, keys, began):
            if not self.failed:
                self.failed = True
                raise RuntimeError("throttled")
            return live.written_since(keys, began)

    notes = FailsOnce()
    done = copy_segment(DeletedAfterTheScan(), target, "src", "dst", SegmentProgress(0, 1), checkpoint=lambda p: None,
                        key_names=["pk"], live_writes=notes, hold_lease=lambda: None)

    assert done.done and done.items == 5 and notes.failed
    assert visible(target.get_item(TableName="dst", Key=deleted, ConsistentRead=True).get("Item")) is None
    assert len([i for i in map(visible, scan_all(target, "dst")) if i]) == 4


def test_a_resumed_backfill_beside_the_lambda_rewrites_every_key_it_noted(target):
    from ferry.dynamo.backfill import rewrite_journal

    create_table(target, "src")
    StateStore(target, "ferry-state").ensure_table()
    target.put_item(TableName="src", Item=image("kept"))
    gone = {"pk": {"S": "gone"}}
    journal.note(target, "ferry-state", "table:src>dst", [(KEY, "40"), (gone, "41")])
    target.put_item(TableName="dst", Item=image("erased by a batch"))  # both written by a killed page's batch
    target.put_item(TableName="dst", Item={**gone, "v": {"S": "older"}})

    assert rewrite_journal(target, target, "src", "dst", target, "ferry-state", "table:src>dst") == 2

    assert visible(target_state(target)) == image("kept")
    assert visible(target.get_item(TableName="dst", Key=gone, ConsistentRead=True).get("Item")) is None
