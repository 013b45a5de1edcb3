"""Backfill planning: segment counts, and the stream-retention warning."""

from __future__ import annotations

from ferry.dynamo.backfill import choose_segments, retention_warning


def test_segments_grow_with_table_size_within_bounds():
    assert choose_segments(0) == 4
    assert choose_segments(1024**3) == 32
    assert choose_segments(10 * 1024**4) == 64


def test_retention_warning_names_the_projection_when_the_backfill_would_outlast_the_stream():
    hours = 3600
    assert retention_warning(copied=10_000_000, estimated_items=20_000_000, elapsed_seconds=2 * hours) is None
    warning = retention_warning(copied=10_000_000, estimated_items=120_000_000, elapsed_seconds=2 * hours)
    assert warning and "24.0 h" in warning and "10,000,000 of ~120,000,000" in warning
    assert retention_warning(copied=0, estimated_items=10, elapsed_seconds=5) is None
