"""The state table keeps checkpoints exactly, including binary and 38-digit scan keys."""

from __future__ import annotations

from ferry.state import SegmentProgress, StateStore


def test_checkpoints_round_trip_exactly(dynamodb):
    store = StateStore(dynamodb, "ferry-state")
    assert store.load("table:a>b") is None  # no table yet: nothing recorded, nothing created
    assert "ferry-state" not in dynamodb.list_tables()["TableNames"]
    store.ensure_table()
    store.ensure_table()  # idempotent
    store.begin("table:a>b", "a", "b", total_segments=3)
    key = {"pk": {"B": bytes(range(256))}, "sk": {"N": "12345678901234567890123456789012345678"}}
    store.save_segment("table:a>b", SegmentProgress(1, 3, last_key=key, items=250, pages=3))
    store.save_segment("table:a>b", SegmentProgress(2, 3, items=10, pages=1, done=True))
    store.save_shard("table:a>b", "shardId-1", "000123")

    state = store.load("table:a>b")

    assert (state.phase, state.total_segments, state.copied, state.segments_done) == ("preflight", 3, 260, 1)
    assert state.segment(1).last_key == key
    assert state.segment(0) == SegmentProgress(0, 3)  # never started
    assert state.shards == {"shardId-1": "000123"}
    assert [m.migration_id for m in store.list_all()] == ["table:a>b"]


def test_a_restart_makes_earlier_checkpoints_stop_counting_in_one_write(dynamodb):
    store = StateStore(dynamodb, "ferry-state")
    store.ensure_table()
    store.begin("table:a>b", "a", "b", total_segments=2)
    for segment in (0, 1):
        store.save_segment("table:a>b", SegmentProgress(segment, 2, items=50, pages=1, done=True))
    store.save_shard("table:a>b", "shardId-1", "000123")
    store.save_dead_letter("table:a>b", "000100", {"pk": {"S": "x"}}, "ValidationException")
    assert store.load("table:a>b").backfilled

    # --restart: the new generation's meta record, and nothing else yet (as if killed right after it)
    store.begin("table:a>b", "a", "b", total_segments=2, generation=1)

    restarted = store.load("table:a>b")
    assert restarted.generation == 1 and not restarted.backfilled
    assert (restarted.copied, restarted.segments_done, restarted.shards, restarted.dead_letters) == (0, 0, {}, 0)
    assert restarted.segment(0) == SegmentProgress(0, 2, generation=1)
    assert store.forget_stale("table:a>b", 1) == 4  # tidied afterwards; the new meta record stays
    assert store.load("table:a>b").generation == 1


def test_a_held_lease_is_confirmed_without_a_write_while_fresh_and_lost_to_a_takeover_once_lapsed(dynamodb):
    from ferry import lease

    store = StateStore(dynamodb, "ferry-state")
    store.ensure_table()
    now = [0.0]
    holding = lease.Holding(store, "table:a>b", "host-a/1/run", seconds=60, clock=lambda: now[0])
    assert holding.confirm() is None  # taken
    store.take_lease("table:a>b", "host-b/2/run", 60, replacing="host-a/1/run")  # as if it had lapsed, taken over
    now[0] = 9.0
    assert holding.confirm() is None  # renewed 9 s ago: not asked again (no one can take a live, fresh lease)
    now[0] = 10.5
    assert holding.confirm() == "host-b/2/run"  # asked again: it is another's now
