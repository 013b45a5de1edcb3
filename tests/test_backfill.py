"""Backfill planning: segment counts; and the stream-retention warning, about live sync's lag."""

from __future__ import annotations

from ferry.dynamo.backfill import choose_segments
from ferry.dynamo.stream import lag_warning


def test_segments_grow_with_table_size_within_bounds():
    assert choose_segments(0) == 4
    assert choose_segments(1024**3) == 32
    assert choose_segments(10 * 1024**4) == 64


def test_the_retention_warning_is_about_live_syncs_lag_not_the_backfills_length():
    hours = 3600
    assert lag_warning(2 * hours) is None and lag_warning(19.9 * hours) is None
    warning = lag_warning(21 * hours)
    assert warning and "21.0 h behind" in warning and "24 h retention" in warning
