"""Archived objects brought back and copied (`ferry bucket --restore DAYS [--restore-tier Bulk|Standard]`).

The bulk sync sets aside source objects it cannot read: GLACIER and DEEP_ARCHIVE objects not
restored, and INTELLIGENT_TIERING ones in an archive tier (lambdas/s3_compare.archived). With
`--restore`, each gets a restore request (start_restores), then the step waits, HEADing the keys
still pending at a growing interval, and copies each by the ordinary copy path as soon as its
restore has finished (wait_and_copy), until none is left or the wait's cap is reached.

A restore is never asked for twice: S3 answers a second request for a restore under way with
RestoreAlreadyInProgress, which counts as started; a rerun after a kill lists again, copies the
objects restored meanwhile with the bulk sync (they are no longer archived) and only waits for
the rest. GLACIER and DEEP_ARCHIVE restores make a temporary copy for DAYS days (the copy must be
made within them); Intelligent-Tiering archive tiers take no Days: the object returns to the
Frequent Access tier for good.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ferry.errors import BadInput, Stopped
from ferry.stopping import STOPPING
from lambdas.s3_apply import head
from lambdas.s3_compare import Listed, archived
from lambdas.s3_copy import CopyResult

FIRST_POLL_SECONDS = 60.0  # a Standard restore takes hours, a Bulk one up to 48: polls double up to...
LONGEST_POLL_SECONDS = 15 * 60.0  # ... a HEAD of each pending key every quarter of an hour
WAIT_SECONDS = 48 * 3600.0  # DEEP_ARCHIVE's Bulk restores take up to 48 hours
HEAD_THREADS = 16
GONE = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class RestoreTiming:
    first_poll: float = FIRST_POLL_SECONDS
    longest_poll: float = LONGEST_POLL_SECONDS
    wait: float = WAIT_SECONDS


def restore_timing(environment=os.environ) -> RestoreTiming:
    """The wait's first poll interval and overall cap, from FERRY_RESTORE_POLL_SECONDS and
    FERRY_RESTORE_WAIT_SECONDS (seconds, for tests and impatient operators); a bad value is BadInput."""
    values = {}
    for name, default in (("FERRY_RESTORE_POLL_SECONDS", FIRST_POLL_SECONDS),
                          ("FERRY_RESTORE_WAIT_SECONDS", WAIT_SECONDS)):
        text = environment.get(name)
        try:
            values[name] = default if text is None else float(text)
        except ValueError:
            values[name] = -1.0
        if not 0 <= values[name] < float("inf"):
            raise BadInput(f"{name} must be zero or more seconds, got {text!r}")
    first = values["FERRY_RESTORE_POLL_SECONDS"]
    return RestoreTiming(first, max(first, LONGEST_POLL_SECONDS), values["FERRY_RESTORE_WAIT_SECONDS"])


@dataclass
class RestoreOutcome:
    started: int = 0  # restore requests accepted, or found under way already
    copied: int = 0  # restored objects copied
    bytes_copied: int = 0
    pending: list[str] = field(default_factory=list)  # still restoring when the wait ended (its cap)


def restore_request(listed: Listed, days: int, tier: str) -> dict:
    """RestoreObject's request: Days only for GLACIER and DEEP_ARCHIVE (S3 refuses them for
    Intelligent-Tiering's archive tiers, whose restores do not expire)."""
    request: dict = {"GlacierJobParameters": {"Tier": tier}}
    if listed.storage_class != "INTELLIGENT_TIERING":
        request["Days"] = days
    return request


def start_restore(s3, bucket: str, listed: Listed, days: int, tier: str) -> bool:
    """Ask for one object's restore. True if started now or already under way, or if the object is
    readable now (rewritten in another class since the listing: InvalidObjectState; the wait HEADs
    it and copies it); False if the key is gone (its delete event takes care of the target). Safe
    to repeat."""
    try:
        s3.restore_object(Bucket=bucket, Key=listed.key, RestoreRequest=restore_request(listed, days, tier))
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in ("RestoreAlreadyInProgress", "InvalidObjectState"):
            return True
        if code in GONE:
            return False
        raise
    return True


def start_restores(s3, bucket: str, objects: list[Listed], days: int, tier: str) -> list[Listed]:
    """Restore requests for `objects`, in parallel; returns those now restoring (or restored)."""
    if not objects:
        return []
    with ThreadPoolExecutor(min(HEAD_THREADS, len(objects))) as pool:
        started = list(pool.map(lambda listed: start_restore(s3, bucket, listed, days, tier), objects))
    return [listed for listed, ok in zip(objects, started) if ok]


def wait_and_copy(s3, bucket: str, objects: list[Listed], copy: Callable[[list[Listed]], list[CopyResult]],
                  timing: RestoreTiming = RestoreTiming(), stop=STOPPING, clock=time.monotonic) -> RestoreOutcome:
    """HEAD the restoring `objects` until each has finished, copying them (`copy`, the bulk sync's
    copy path) as they do: first at once, then after `timing.first_poll` seconds, doubling up to
    `timing.longest_poll`, until none is pending or `timing.wait` has passed (the rest are reported
    pending: a rerun waits for them). A key deleted meanwhile is dropped (its delete event applies);
    one rewritten in a readable class is copied. Ctrl-C/SIGTERM (`stop`) ends the wait with Stopped.
    The outcome counts `objects` as started (start_restores returned them)."""
    outcome = RestoreOutcome(started=len(objects))
    pending = {listed.key: listed for listed in objects}
    interval, deadline = timing.first_poll, clock() + timing.wait
    while pending:
        keys = list(pending)
        with ThreadPoolExecutor(min(HEAD_THREADS, len(keys))) as pool:
            heads = list(pool.map(lambda key: head(s3, bucket, key), keys))
        ready = []
        for key, found in zip(keys, heads):
            if found is None or not archived(found):
                del pending[key]
                if found is not None:
                    ready.append(Listed.from_head(key, found))
        copied = copy(ready) if ready else []
        outcome.copied += len(copied)
        outcome.bytes_copied += sum(result.size for result in copied)
        if not pending or clock() + interval > deadline:
            break
        if stop.wait(interval):
            raise Stopped(f"the wait for {len(pending)} restores in {bucket} stopped: rerun to go on waiting")
        interval = min(interval * 2, timing.longest_poll)
    outcome.pending = sorted(pending)
    return outcome
