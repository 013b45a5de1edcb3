"""Live progress in the terminal (stderr) while a flow runs: backfill bars, the bucket line, live-sync lag.

The backfill bars read the state table's checkpoints (rather than hooking into the tasks), so they
show exactly what is confirmed written, the same numbers `ferry status` prints, wherever the flow
runs. The bucket line and the live-sync line read the counters the flow run's tasks keep in this
process (tasks/handles.py).
"""

from __future__ import annotations

import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ferry.state import MigrationState, StateStore
from tasks.handles import (BackfillLimits, BucketCounters, LiveSync, bucket_counters_name, limits_name,
                           live_sync_name, newest)

MAX_SEGMENT_BARS = 16


class LiveProgress:
    """Rich bars redrawn by a background thread every half second (`_refresh`), and once more at the end."""

    def __init__(self, console: Console, *columns, transient: bool = False):
        self.progress = Progress(*columns, console=console, transient=transient)
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
            except (BotoCoreError, ClientError):  # a missed read of the state table only delays the bars
                pass

    def _refresh(self) -> None:
        raise NotImplementedError


def bar_columns(fields: str, bar_width: int = 40) -> tuple:
    """A description, a bar, done/total, the display's own `fields`, and the time elapsed."""
    return (TextColumn("{task.description}"), BarColumn(bar_width=bar_width), MofNCompleteColumn(),
            TextColumn(fields), TimeElapsedColumn())


class BackfillProgress(LiveProgress):
    """Polls the migration's state (its checkpoints) and draws one bar per segment."""

    def __init__(self, state: StateStore, migration_id: str, estimated_items: int, console: Console):
        super().__init__(console, *bar_columns("items  {task.fields[pages]} pages  {task.fields[rate]} items/s"))
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
        self._bar("all", "all segments" + self._capacity(), copied,
                  copied if done else max(self.estimated_items, copied), sum(s.pages for s in shown))

    def _capacity(self) -> str:
        """Capacity units per second the backfill takes, against its limits (from this run's limiters)."""
        limits = newest(limits_name(self.migration_id))
        if not isinstance(limits, BackfillLimits):
            return ""
        shown = [f"{name} {limiter.rate():,.0f}" + (f"/{limiter.units_per_second:,.0f}" if limiter.units_per_second
                                                     else "") + " u/s"
                 for name, limiter in (("read", limits.read), ("write", limits.write))]
        return " (" + ", ".join(shown) + ")"

    def _bar(self, key, description, completed, total, pages) -> None:
        """Draw one bar; its rate counts from the first time it was seen, not from Prefect's start-up."""
        now = time.monotonic()
        since, base = self.first_seen.setdefault(key, (now, completed))
        rate = (completed - base) / (now - since) if now - since > 0.5 else 0.0
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(description, total=total, pages=0, rate="0")
        self.progress.update(self.bars[key], description=description, completed=completed, total=total, pages=pages,
                             rate=f"{rate:,.0f}")


class BucketProgress(LiveProgress):
    """One line from this process's counters: objects compared, to copy and copied, bytes, rate; and
    once live sync has applied events, how many and its lag."""

    def __init__(self, source: str, target: str, console: Console):
        super().__init__(console, *bar_columns("copied, {task.fields[compared]:,} compared, "
                                               "{task.fields[megabytes]:,.1f} MB, {task.fields[rate]}/s"
                                               "{task.fields[live]}", bar_width=16))
        self.name = bucket_counters_name(source, target)
        self.bar = self.progress.add_task(f"{source} -> {target}", total=None, compared=0, megabytes=0.0, rate="0",
                                          live="")
        self.started = time.monotonic()

    def _refresh(self) -> None:
        c = newest(self.name) or BucketCounters()
        elapsed = max(time.monotonic() - self.started, 1e-6)
        live = f"; {c.events_applied:,} events, lag {c.lag_seconds:.1f}s" if c.lag_seconds is not None else ""
        self.progress.update(self.bar, completed=c.copied, total=max(c.to_copy, c.copied) or None,
                             compared=c.compared, megabytes=c.bytes_copied / 2**20, rate=f"{c.copied / elapsed:,.0f}",
                             live=live)


class LiveSyncLine(LiveProgress):
    """`ferry sync table`: a spinner with the records applied and the lag, from this run's live sync."""

    def __init__(self, migration_id: str, console: Console):
        super().__init__(console, SpinnerColumn(), TextColumn("{task.description}"), transient=True)
        self.name = live_sync_name(migration_id)
        self.line = self.progress.add_task("live sync starting", total=None)

    def _refresh(self) -> None:
        sync = newest(self.name)
        if isinstance(sync, LiveSync):
            self.progress.update(self.line, description=f"live sync: {sync.records:,} records applied, lag "
                                 f"{sync.lag_seconds:.2f}s" + (" (caught up)" if sync.caught_up else ""))
