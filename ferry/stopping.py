"""Ctrl-C or SIGTERM arrived: the engine's long loops (backfill pages, bucket copies, verification
scans) stop after the page or object in hand and raise Stopped; a rerun resumes from the checkpoints.

Set by the flows' signal handler (tasks/handles.stop_all_on_signals), cleared when a flow begins in
the main thread. One event for the process: a signal stops every migration the process runs.
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()

# Set by the CLI: SIGTERM stops a run as Ctrl-C does. Elsewhere (a worker running a deployment) SIGTERM
# stays Prefect's: its cancellation needs its own handler in place, and its kill leaves checkpoints.
SIGTERM_IS_OURS = threading.Event()
