"""What the tasks of one flow run share in this process: a live sync's signals, a bucket sync's counters.

These are live objects (events, counters), not Prefect data, so they are looked up, not passed as
parameters: `this_run(name, Kind)` gives the tasks of one flow run the same object, created on first
use, and every new flow run gets a fresh one — a second run in the same process never inherits the
first's `stop` or its progress. A watcher in the same process that did not start the tasks itself
(the CLI's progress display, which starts exactly one flow run) reads `newest(name)`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from prefect.runtime import flow_run

from ferry.dynamo.backfill import LiveWrites
from ferry.dynamo.capacity import RateLimiter, limiter_for
from ferry.errors import Stopped
from ferry.stopping import SIGTERM_IS_OURS, STOPPING

Handle = TypeVar("Handle")
KEPT = 1024  # handles of this many (run, name) pairs are kept (a long-lived worker's oldest are forgotten)
CAUGHT_UP_WITHIN_SECONDS = 2.0  # what the progress line calls caught up

_lock = threading.Lock()
_by_run: dict[tuple[str, str], object] = {}
_newest: dict[str, object] = {}


def this_run(name: str, kind: Callable[[], Handle]) -> Handle:
    """The flow run's object called `name`, made with `kind()` the first time the run asks for it
    (outside a flow run, a new one each time: nothing to share it with)."""
    if flow_run.id is None:
        return kind()
    key = (str(flow_run.id), name)
    with _lock:
        if key not in _by_run:
            _by_run[key] = _newest[name] = kind()
            while len(_by_run) > KEPT:  # a long-lived worker forgets old runs' handles
                del _by_run[next(iter(_by_run))]
        return _by_run[key]


def existing(name: str) -> object | None:
    """The flow run's object called `name` if one of its tasks made it already, else None."""
    if flow_run.id is None:
        return None
    with _lock:
        return _by_run.get((str(flow_run.id), name))


def newest(name: str) -> object | None:
    """The object called `name` of the latest flow run that asked for one (None before any did)."""
    with _lock:
        return _newest.get(name)


@dataclass
class LiveSync:
    """One running live sync: how to stop it, how far it has applied the stream, whether it died."""

    stop: threading.Event = field(default_factory=threading.Event)
    guarded: bool = True  # the backfill may still write: every write goes through the write rule's conditions
    over_unchanged_only: bool = False  # a cutover's switch window: the target's service may write too
    batch_lock: threading.Lock = field(default_factory=threading.Lock)  # held while a batch is applied
    applied_to: float = float("-inf")  # wall-clock time: every change made before it has been applied
    failure: BaseException | None = None  # why the poller stopped for good, if it did
    records: int = 0
    lag_seconds: float = 0.0
    warned: bool = False  # the retention warning was logged
    live_writes: LiveWrites = field(default_factory=LiveWrites)  # guarded writes, for the backfill to respect
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def end_guard(self) -> None:
        """The backfill is done: plain writes from the next batch on (a batch in hand finishes guarded)."""
        self.guarded = False

    @property
    def caught_up(self) -> bool:
        return time.time() - self.applied_to < CAUGHT_UP_WITHIN_SECONDS

    def reached(self, applied_to: float) -> None:
        with self._changed:
            self.applied_to = max(self.applied_to, applied_to)
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        """The poller has stopped with `error` and will not be retried: whoever waits on it stops too."""
        with self._changed:
            self.failure = error
            self._changed.notify_all()

    def wait_until_applied(self, since: float, timeout: float) -> None:
        """Return once every change made before the wall-clock time `since` has been applied; raise
        the poller's own error as soon as it dies, Stopped on Ctrl-C or SIGTERM, or TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.applied_to < since and self.failure is None:
                if STOPPING.is_set():
                    raise Stopped("live sync was stopped before it caught up")
                if (remaining := deadline - time.monotonic()) <= 0:
                    raise TimeoutError(f"live sync did not catch up within {timeout:.0f}s")
                self._changed.wait(min(remaining, 1.0))
            if self.applied_to < since:
                raise self.failure


class BucketCounters:
    """What a bucket sync has done so far; its tasks add to it, the CLI draws it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.compared = self.to_copy = self.copied = self.bytes_copied = 0
        self.events_applied = 0  # by this run's drains, so far
        self.lag_seconds: float | None = None  # of the last batch of events applied

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def applied(self, messages: int, lag_seconds: float) -> None:
        """A batch of events a drain applied (ferry/s3/events.drain_queue's `progress`)."""
        with self.lock:
            self.events_applied += messages
            self.lag_seconds = lag_seconds


@dataclass
class BackfillLimits:
    """The read and write limiters every segment of one run shares (live sync uses neither)."""

    read: RateLimiter
    write: RateLimiter

    @classmethod
    def for_job(cls, job, clients) -> "BackfillLimits":
        def source():
            return clients.source.describe_table(TableName=job.source)["Table"]

        def target():
            return clients.target.describe_table(TableName=job.target)["Table"]

        return cls(limiter_for(job.max_read_units, job.read_capacity_percent, source, "read"),
                   limiter_for(job.max_write_units, job.write_capacity_percent, target, "write"))


def limits_name(migration_id: str) -> str:
    return f"backfill-limits:{migration_id}"


def live_sync_name(migration_id: str) -> str:
    return f"live-sync:{migration_id}"


def bucket_counters_name(source: str, target: str) -> str:
    return f"bucket-counters:{source}>{target}"


@contextmanager
def stop_on_signals(sync: LiveSync):
    """Run alone (the poller), Ctrl-C and SIGTERM stop live sync after the batch in hand. Prefect
    installs its own SIGTERM handler when a flow starts, so this one goes in after it, and out again."""
    if threading.current_thread() is not threading.main_thread():  # one of several: stop_all_on_signals stops it
        with _running_lock:
            _running[id(sync)] = sync
        if STOPPING.is_set():  # started after the signal
            sync.stop.set()
        try:
            yield
        finally:
            with _running_lock:
                _running.pop(id(sync), None)
        return

    def stop(signum, frame):
        sync.stop.set()
        STOPPING.set()  # whatever waits for this live sync stops too

    with handling_signals(stop):
        yield


_running: dict[int, LiveSync] = {}  # live syncs running in threads of this process (a plan's)
_running_lock = threading.Lock()


@contextmanager
def stop_all_on_signals(interrupt: bool = False):
    """Ctrl-C and SIGTERM stop every live sync running in threads of this process after the batch in
    hand, and every backfill segment, bucket copy and verification scan after the page or object in
    hand (ferry/stopping.py). With `interrupt` the flow itself is interrupted too: KeyboardInterrupt
    (SIGTERM first goes on to the handler that was there: Prefect's, which records the run's end);
    without, the flow waits for its live syncs to stop (`ferry sync plan`). Only the main thread can
    receive signals, so it installs the handler; SIGTERM only where the CLI owns it (SIGTERM_IS_OURS)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOPPING.clear()
    previous_sigterm = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        if not STOPPING.is_set():  # a second signal while the first is handled takes no lock
            STOPPING.set()
            with _running_lock:
                for sync in _running.values():
                    sync.stop.set()
        if not interrupt:
            return
        if signum == signal.SIGTERM and callable(previous_sigterm):
            previous_sigterm(signum, frame)
        raise KeyboardInterrupt

    with handling_signals(stop):
        yield


@contextmanager
def handling_signals(handler):
    """`handler` for SIGINT (and SIGTERM where the CLI owns it) while the block runs, in the main
    thread; then the previous ones."""
    handled = (signal.SIGINT, signal.SIGTERM) if SIGTERM_IS_OURS.is_set() else (signal.SIGINT,)
    previous = {sig: signal.signal(sig, handler) for sig in handled}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)
