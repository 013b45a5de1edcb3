"""Ctrl-C or SIGTERM arrived: the engine's long loops (backfill pages, bucket copies, verification
scans) stop after the page or object in hand and raise Stopped; a rerun resumes from the checkpoints.

Set by the flows' signal handler (tasks/handles.stop_all_on_signals), cleared when a flow begins in
the main thread. One event for the process: a signal stops every migration the process runs.
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()
