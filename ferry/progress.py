"""Live backfill progress in the terminal, read from the state table's checkpoints.

Reading checkpoints (rather than hooking into the tasks) means the bars show exactly what is
confirmed written, the same numbers `ferry status` prints, wherever the flow actually runs.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ferry.state import MigrationState, StateStore

MAX_SEGMENT_BARS = 16


class LiveProgress:
    """Rich bars redrawn by a background thread every half second (`_refresh`), and once more at the end."""

    def __init__(self, console: Console, fields: str, bar_width: int | None = 40):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=bar_width),
                                 MofNCompleteColumn(), TextColumn(fields), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ferry-progress", daemon=True)

    def __enter__(self):
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=5)
        self._refresh()
        self.progress.stop()

    def _run(self) -> None:
        while not self.stop_event.wait(0.5):
            try:
                self._refresh()
            except Exception:  # a missed refresh only delays the bars
                pass

    def _refresh(self) -> None:
        raise NotImplementedError


class BackfillProgress(LiveProgress):
    """Polls the migration's state (its checkpoints) and draws one bar per segment."""

    def __init__(self, state: StateStore, migration_id: str, estimated_items: int, console: Console):
        super().__init__(console, "items  {task.fields[pages]} pages  {task.fields[rate]} items/s")
        self.state, self.migration_id, self.estimated_items = state, migration_id, estimated_items
        self.bars: dict[int | str, int] = {}
        self.first_seen: dict[int | str, tuple[float, int]] = {}  # bar -> (when, items) at first sight

    def _refresh(self) -> None:
        migration = self.state.load(self.migration_id)
        if migration is None or not migration.segments:
            return
        self._draw(migration)

    def _draw(self, migration: MigrationState) -> None:
        per_segment = max(1, self.estimated_items // max(1, migration.total_segments))
        shown = sorted(migration.segments.values(), key=lambda s: s.segment)
        if migration.total_segments <= MAX_SEGMENT_BARS:
            for seg in shown:
                self._bar(seg.segment, f"segment {seg.segment:>2}", seg.items,
                          seg.items if seg.done else max(per_segment, seg.items), seg.pages)
        copied = migration.copied
        done = migration.segments_done == migration.total_segments
        self._bar("all", "all segments", copied, copied if done else max(self.estimated_items, copied),
                  sum(s.pages for s in shown))

    def _bar(self, key, description, completed, total, pages) -> None:
        """Draw one bar; its rate counts from the first time it was seen, not from Prefect's start-up."""
        now = time.monotonic()
        since, base = self.first_seen.setdefault(key, (now, completed))
        rate = (completed - base) / (now - since) if now - since > 0.5 else 0.0
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(description, total=total, pages=0, rate="0")
        self.progress.update(self.bars[key], completed=completed, total=total, pages=pages, rate=f"{rate:,.0f}")


class BucketCounters:
    """What a bucket sync has done so far in this process; the tasks add to it, the CLI draws it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.compared = self.to_copy = self.copied = self.bytes_copied = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


_bucket_counters: dict[tuple[str, str], BucketCounters] = {}


def bucket_counters(source: str, target: str) -> BucketCounters:
    """The counters of the sync of `source` into `target` in this process (created on first use)."""
    return _bucket_counters.setdefault((source, target), BucketCounters())


class BucketProgress(LiveProgress):
    """One line from this process's counters: objects compared, to copy and copied, bytes, rate."""

    def __init__(self, source: str, target: str, console: Console):
        super().__init__(console, "copied, {task.fields[compared]:,} compared, {task.fields[megabytes]:,.1f} MB, "
                                  "{task.fields[rate]}/s", bar_width=16)
        self.counters = bucket_counters(source, target)
        self.bar = self.progress.add_task(f"{source} -> {target}", total=None, compared=0, megabytes=0.0, rate="0")
        self.started = time.monotonic()

    def _refresh(self) -> None:
        c = self.counters
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.bar, completed=c.copied, total=max(c.to_copy, c.copied) or None,
                             compared=c.compared, megabytes=c.bytes_copied / 2**20, rate=f"{c.copied / elapsed:,.0f}")
