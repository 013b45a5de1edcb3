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
    assert store.forget("table:a>b") == 4 and store.load("table:a>b") is None
