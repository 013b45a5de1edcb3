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


class BackfillProgress:
    """A background thread polling the migration's state and drawing one bar per segment."""

    def __init__(self, state: StateStore, migration_id: str, estimated_items: int, console: Console):
        self.state, self.migration_id, self.estimated_items = state, migration_id, estimated_items
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items  {task.fields[pages]} pages  {task.fields[rate]} items/s"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.bars: dict[int | str, int] = {}
        self.first_seen: dict[int | str, tuple[float, int]] = {}  # bar -> (when, items) at first sight
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
