"""One live-sync applier per pair of tables at a time: a lease in the state table.

A second poller, an overlapping scheduled re-sync, or `ferry sync table` beside `ferry table` would
otherwise apply the same stream twice, a lagging one writing older states over newer ones. The
lease names its holder ("host/pid/flow run"); it is renewed while the holder runs and lapses
LEASE_SECONDS after the holder stops renewing. A holder that was a process on this machine and no
longer runs (killed) is taken over at once instead of waited out.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from ferry.state import StateStore

LEASE_SECONDS = float(os.environ.get("FERRY_LEASE_SECONDS", 60))  # tests shorten it


def holder_name(run_id: object) -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{run_id}"


def dead_here(holder: str) -> bool:
    """Whether a holder ("host/pid/run") was a process on this machine that no longer runs."""
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def take(state: StateStore, migration_id: str, holder: str, seconds: float = LEASE_SECONDS) -> str | None:
    """Take or renew the lease; None when held now, else who holds it."""
    other = state.take_lease(migration_id, holder, seconds)
    if other and dead_here(other):  # killed on this machine: no need to wait for its lease to lapse
        other = state.take_lease(migration_id, holder, seconds, replacing=other)
    return other


class Holding:
    """A lease this process holds, confirmed often (before and after every backfill page) but
    renewed at most every sixth of its length: a lease renewed that recently has most of its time
    left, so no one else can have taken it (a live holder is only ever waited out)."""

    def __init__(self, state: StateStore, migration_id: str, holder: str, seconds: float = LEASE_SECONDS,
                 clock=time.monotonic):
        self.state, self.migration_id, self.holder, self.seconds, self.clock = state, migration_id, holder, seconds, clock
        self.renewed_at: float | None = None
        self.lock = threading.Lock()

    def confirm(self) -> str | None:
        """None while the lease is this holder's; else who holds it."""
        with self.lock:
            now = self.clock()
            if self.renewed_at is not None and now - self.renewed_at < self.seconds / 6:
                return None
            try:
                other = take(self.state, self.migration_id, self.holder, self.seconds)
            except (ClientError, BotoCoreError):  # the state table unreachable for a moment
                if self.renewed_at is not None and now - self.renewed_at < self.seconds / 2:
                    return None  # renewed recently enough that it is still ours: try again next time
                raise
            if other:
                return other
            self.renewed_at = now
            return None


def held_by_another(state: StateStore, migration_id: str, holder: str | None = None) -> str | None:
    """Read-only: who else holds an unexpired lease (for checks that must not write)."""
    lease = state.read_lease(migration_id)
    if lease is None or lease[0] == holder or dead_here(lease[0]):
        return None
    return lease[0]


def already_running(source: str, target: str, other: str) -> str:
    return (f"live sync of {source} into {target} is already running ({other}): stop it first, or, if it was "
            f"killed on another machine, run again once its lease lapses (at most {LEASE_SECONDS:.0f} s)")
