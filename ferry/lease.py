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


def held_by_another(state: StateStore, migration_id: str, holder: str | None = None) -> str | None:
    """Read-only: who else holds an unexpired lease (for checks that must not write)."""
    lease = state.read_lease(migration_id)
    if lease is None or lease[0] == holder or dead_here(lease[0]):
        return None
    return lease[0]


def already_running(source: str, target: str, other: str) -> str:
    return (f"live sync of {source} into {target} is already running ({other}): stop it first, or, if it was "
            f"killed on another machine, run again once its lease lapses (at most {LEASE_SECONDS:.0f} s)")
