"""`--all-versions`: every version and delete marker of every key, in order, and its proof.

The per-key history rule and sync are lambdas/s3_versions.py's (the Lambda runs them too); here are
the bucket-wide forms: both buckets listed key by key (ListObjectVersions pages, each side in a
thread of its own, joined on the key: memory holds a page per side and the keys in hand, never the
bucket), each key's two chains compared and, for the sync, the difference written by a pool of
workers (one key per worker at a time: a key's entries are written in order). A version is copied
server-side (CopyObject of that VersionId; above the multipart threshold, UploadPartCopy pinned to
it), a delete marker reproduced by a DeleteObject.

Resumable and exact: a killed sync leaves each key's target chain a beginning of its source's (or
one entry more, from a request whose answer was lost), and a rerun compares the chains again and
appends only the rest; a duplicate or a diverged chain is repaired as lambdas/s3_versions.py says,
and read again before it counts as done. Also: what the pair's event queue remembers (the mode, so
`ferry sync bucket` and the Lambda apply events the same way), and the preflight of the mode.
"""

from __future__ import annotations

import csv
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ferry.errors import BadInput, Stopped
from ferry.s3.listing import PAGE_SIZE
from ferry.s3.verify import KINDS, MAX_LISTED_KEYS, PREFIX_COLUMNS, BucketReport, prefix_table, top_prefix
from ferry.stopping import STOPPING
from lambdas.s3_compare import ARCHIVED_CLASSES
from lambdas.s3_copy import MULTIPART_THRESHOLD, PART_SIZE, PLAIN, CopySettings
from lambdas.s3_versions import (ChainPlan, Entry, apply_plan, judge, key_chain, next_page, order_chain,
                                 plan_chain, sync_chain)

KEY_THREADS = 16  # keys written at once (a key's own entries one after another)
KEYS_AHEAD = 1000  # chains listed ahead of the comparison, per side
ALL_VERSIONS_TAG = "ferry:all-versions"  # on a pair's queue: the mode its migration was made with


# --- the mode: preflight and what the queue remembers -------------------------------------------
def check_versioning(source_s3, target_s3, source: str, target: str) -> None:
    """`--all-versions` needs a target that keeps versions (Enabled: a Suspended bucket replaces its
    "null" version on every write) and a source that has some (never versioned: each key has one
    version, its current one, which the default mode copies: a mistaken bucket or flag, refused)."""
    status = target_s3.get_bucket_versioning(Bucket=target).get("Status")
    if status != "Enabled":
        raise BadInput(f"--all-versions needs versioning Enabled on target bucket {target!r} (it is "
                       f"{(status or 'never enabled').lower()}): enable it (aws s3api put-bucket-versioning --bucket "
                       f"{target} --versioning-configuration Status=Enabled) or drop --all-versions")
    if not source_s3.get_bucket_versioning(Bucket=source).get("Status"):
        raise BadInput(f"source bucket {source!r} has never been versioned: it has current versions only, which "
                       "the default mode copies: drop --all-versions")


def remember_all_versions(sqs, queue_url: str, all_versions: bool) -> None:
    """The pair's queue remembers the mode of its last `ferry bucket`, so `ferry sync bucket`
    without the flag applies events the same way."""
    sqs.tag_queue(QueueUrl=queue_url, Tags={ALL_VERSIONS_TAG: "true" if all_versions else "false"})


def recorded_all_versions(sqs, queue_url: str) -> bool | None:
    """The mode the pair was migrated with (None: recorded by no Ferry yet, so the default mode)."""
    value = sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}).get(ALL_VERSIONS_TAG)
    return None if value is None else value == "true"


# --- listing key by key --------------------------------------------------------------------------
def iter_chains(s3, bucket: str, prefix: str = "", page_size: int = PAGE_SIZE) -> Iterator[tuple[str, list[Entry]]]:
    """Every key under `prefix` with its chain (oldest first), in key order. A key whose entries run
    over a page boundary is held until its last page; nothing else is kept between pages."""
    base = request = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    held: str | None = None
    versions: list[dict] = []
    markers: list[dict] = []
    while True:
        page = s3.list_object_versions(**request)
        by_key: dict[str, tuple[list[dict], list[dict]]] = defaultdict(lambda: ([], []))
        for listed in page.get("Versions", []):
            by_key[listed["Key"]][0].append(listed)
        for listed in page.get("DeleteMarkers", []):
            by_key[listed["Key"]][1].append(listed)
        for key in sorted(by_key):  # code point order is S3's UTF-8 byte order
            if held is not None and key != held:
                yield held, order_chain(s3, bucket, held, versions, markers)
                versions, markers = [], []
            held = key
            versions += by_key[key][0]
            markers += by_key[key][1]
        if not page.get("IsTruncated"):
            break
        request = {**base, **next_page(page)}
    if held is not None:
        yield held, order_chain(s3, bucket, held, versions, markers)


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator, ahead: int) -> Iterator:
    """`items`, produced by a thread of their own at most `ahead` in advance (two listings then run
    side by side). The thread stops when the consumer does."""
    buffer: queue.Queue = queue.Queue(ahead)
    done, stop = object(), threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as error:  # handed to the consumer
            buffer.put(_Failed(error))

    threading.Thread(target=produce, daemon=True, name="ferry-versions-listing").start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()


def paired_chains(source_s3, target_s3, source_bucket: str, target_bucket: str, prefix: str = "",
                  page_size: int = PAGE_SIZE) -> Iterator[tuple[str, list[Entry], list[Entry]]]:
    """(key, source chain, target chain) for every key either side has, in key order ([]: none)."""
    sources = prefetched(iter_chains(source_s3, source_bucket, prefix, page_size), KEYS_AHEAD)
    targets = prefetched(iter_chains(target_s3, target_bucket, prefix, page_size), KEYS_AHEAD)
    try:
        source, target = next(sources, None), next(targets, None)
        while source is not None or target is not None:
            if target is None or (source is not None and source[0] < target[0]):
                yield source[0], source[1], []
                source = next(sources, None)
            elif source is None or target[0] < source[0]:
                yield target[0], [], target[1]
                target = next(targets, None)
            else:
                yield source[0], source[1], target[1]
                source, target = next(sources, None), next(targets, None)
    finally:  # stopped early: the listing threads stop too
        sources.close()
        targets.close()


def each_key(pairs: Iterator[tuple[str, list[Entry], list[Entry]]], work: Callable[[str, list, list], None],
             threads: int = KEY_THREADS, stopping: Callable[[], bool] = STOPPING.is_set, stopped: str = "") -> None:
    """`work(key, source, target)` for every pair, up to `threads` keys at once; the listing waits
    while they lag (what is held is a few thousand keys, never the bucket). Once `stopping()`, no
    key starts: those in hand finish, then Stopped is raised. A failing key fails the whole."""
    try:
        with ThreadPoolExecutor(threads) as pool:
            running: set[Future] = set()
            for key, source, target in pairs:
                if stopping():
                    wait(running)
                    raise Stopped(stopped or "stopped after the keys in hand")
                running.add(pool.submit(work, key, source, target))
                if len(running) >= 2 * threads:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()
            for future in wait(running)[0]:
                future.result()
    finally:
        close = getattr(pairs, "close", None)
        if close:
            close()


# --- the report ----------------------------------------------------------------------------------
@dataclass
class HistoryReport(BucketReport):
    """A verification of histories. The keys of BucketReport keep their meaning per key: `missing`,
    the source has a history the target lacks; `extra`, only the target has one; `changed`, both
    have one and they differ (count, order, sizes or checksums of versions, or delete markers);
    `archived`, the target's history stops at an archived source version. `*_objects` count keys
    whose newest entry is a version (current objects)."""

    source_versions: int = 0
    target_versions: int = 0
    source_delete_markers: int = 0
    target_delete_markers: int = 0
    version_map: int = 0  # (source, target) pairs of versions and markers found in place

    def summary(self) -> dict:
        return super().summary() | {
            "source_versions": self.source_versions, "target_versions": self.target_versions,
            "source_delete_markers": self.source_delete_markers, "target_delete_markers": self.target_delete_markers,
            "version_map": self.version_map}


def kind_of(source: list[Entry], target: list[Entry], plan: ChainPlan) -> str | None:
    """How a key's two histories differ (None: they do not)."""
    if plan.equal:
        return None
    if not target:
        return "missing"
    if not source:
        return "extra"
    if not plan.remove and not plan.append[0].marker and plan.append[0].storage_class in ARCHIVED_CLASSES:
        return "archived"
    return "changed"


class HistoryBuilder:
    """Adds key comparisons up into one HistoryReport (thread-safe): exact counts, the first keys
    of each kind, and a tally per top-level prefix (versions as objects, their bytes)."""

    def __init__(self, source: str, target: str, prefix: str = ""):
        self.source, self.target, self.prefix = source, target, prefix
        self.lock = threading.Lock()
        self.numbers: dict[str, int] = defaultdict(int)
        self.keys: dict[str, list[str]] = {kind: [] for kind in (*KINDS, "archived")}
        self.by_prefix: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(PREFIX_COLUMNS, 0))

    def add(self, key: str, source: list[Entry], target: list[Entry], plan: ChainPlan) -> str | None:
        kind = kind_of(source, target, plan)
        with self.lock:
            tally = self.by_prefix[top_prefix(key, self.prefix)]
            for side, chain in (("source", source), ("target", target)):
                versions = [e for e in chain if not e.marker]
                self.numbers[f"{side}_objects"] += bool(chain) and not chain[-1].marker
                self.numbers[f"{side}_versions"] += len(versions)
                self.numbers[f"{side}_delete_markers"] += len(chain) - len(versions)
                tally[f"{side} objects"] += len(versions)
                tally[f"{side} bytes"] += sum(e.size for e in versions)
            self.numbers["version_map"] += len(plan.kept)
            if kind:
                self.numbers[kind] += 1
                if len(self.keys[kind]) < MAX_LISTED_KEYS:
                    self.keys[kind].append(key)
                if kind in KINDS:
                    tally[kind] += 1
                else:
                    self.numbers["archived_bytes"] += sum(e.size for e in plan.append if not e.marker)
        return kind

    def report(self) -> HistoryReport:
        n = self.numbers
        return HistoryReport(
            source=self.source, target=self.target, equal=not any(n[k] for k in (*KINDS, "archived")),
            source_objects=n["source_objects"], target_objects=n["target_objects"],
            **{kind: sorted(self.keys[kind]) for kind in KINDS}, counts={kind: n[kind] for kind in KINDS},
            archived=sorted(self.keys["archived"]), archived_count=n["archived"], archived_bytes=n["archived_bytes"],
            by_prefix=prefix_table(self.by_prefix), source_versions=n["source_versions"],
            target_versions=n["target_versions"], source_delete_markers=n["source_delete_markers"],
            target_delete_markers=n["target_delete_markers"], version_map=n["version_map"])


class VersionMap:
    """The version-ID map as CSV, written as keys are compared (never held whole): per key and
    position, whether a version or a delete marker, and its ID on each side."""

    COLUMNS = ["key", "position", "kind", "source_version_id", "target_version_id"]

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.restart()

    def restart(self) -> None:
        """Start the file again (a comparison made again replaces the map)."""
        if getattr(self, "file", None):
            self.file.close()
        self.file = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.COLUMNS)

    def __call__(self, key: str, kept: list[tuple[Entry, Entry]]) -> None:
        with self.lock:
            self.writer.writerows([key, n, "delete marker" if s.marker else "version", s.version_id, t.version_id]
                                  for n, (s, t) in enumerate(kept))

    def close(self) -> None:
        self.file.close()


# --- verify and sync -----------------------------------------------------------------------------
def verify_versions(source_s3, target_s3, source_bucket: str, target_bucket: str, prefix: str = "",
                    mapped: Callable[[str, list], None] | None = None, deep: bool = False,
                    page_size: int = PAGE_SIZE, threads: int = KEY_THREADS,
                    settings: CopySettings = PLAIN) -> HistoryReport:
    """Compare every key's history now: count, order, sizes and checksums of versions, delete
    markers. `mapped(key, pairs)`: told each key's version-ID map (for the report's CSV). `deep`:
    every pair of versions is HEADed (additional checksums), not only those the listings leave open."""
    found = HistoryBuilder(source_bucket, target_bucket, prefix)
    same = judge(source_s3, target_s3, source_bucket, target_bucket, deep, settings)

    def compare(key: str, source: list[Entry], target: list[Entry]) -> None:
        plan = plan_chain(source, target, same)
        found.add(key, source, target, plan)
        if mapped and plan.kept:
            mapped(key, plan.kept)

    each_key(paired_chains(source_s3, target_s3, source_bucket, target_bucket, prefix, page_size), compare, threads,
             stopping=lambda: False)
    return found.report()


MAX_RECONFIRMED = 10_000


def reconfirm_histories(report: HistoryReport, source_s3, target_s3, settings: CopySettings = PLAIN) -> HistoryReport:
    """Keep only the keys whose histories still differ once live sync's queued events are applied:
    each is listed again on both sides (ferry/s3/verify.reconfirm's counterpart). A report whose key
    lists were cut short, or too long to read again, is returned as it is."""
    listed = sum(len(getattr(report, kind)) for kind in KINDS)
    if report.equal or listed > MAX_RECONFIRMED or report.archived_count != len(report.archived) or \
            any(report.count(k) != len(getattr(report, k)) for k in KINDS):
        return report
    same = judge(source_s3, target_s3, report.source, report.target, settings=settings)
    still: dict[str, list[str]] = {kind: [] for kind in (*KINDS, "archived")}
    for key in sorted({key for kind in (*KINDS, "archived") for key in getattr(report, kind)}):
        source, target = key_chain(source_s3, report.source, key), key_chain(target_s3, report.target, key)
        if kind := kind_of(source, target, plan_chain(source, target, same)):
            still[kind].append(key)
    report.missing, report.extra, report.changed, report.archived = (still["missing"], still["extra"],
                                                                     still["changed"], still["archived"])
    report.counts = {kind: len(still[kind]) for kind in KINDS}
    report.archived_count = len(still["archived"])
    report.equal = not any(still.values())
    return report


@dataclass
class VersionsOutcome:
    """What one bulk sync of histories did, and what its listings found before it wrote."""

    versions: int = 0  # versions copied
    markers: int = 0  # delete markers made
    removed: int = 0  # target entries deleted (duplicates, diverged histories, keys the source lacks)
    bytes: int = 0
    planned: int = 0  # keys whose history differed
    found: HistoryReport | None = None


def sync_versions(source_s3, target_s3, source_bucket: str, target_bucket: str, prefix: str = "",
                  delete: bool = False, multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                  threads: int = KEY_THREADS, stopping: Callable[[], bool] = STOPPING.is_set,
                  progress: Callable[..., None] = lambda **counts: None, page_size: int = PAGE_SIZE,
                  settings: CopySettings = PLAIN) -> VersionsOutcome:
    """Make every key's target history equal its source's: append what is missing, in order; repair
    what diverged (read again before it counts). A key only the target has is left alone unless
    `delete` (then its versions are deleted: its history is the source's, none). Idempotent; a
    rerun after a kill appends only the rest. `progress(compared=, to_copy=, copied=, bytes_copied=)`
    is told as keys are compared and written. Copies use `target_s3` (a request to the target that
    reads the source); listings and source HEADs `source_s3`."""
    found = HistoryBuilder(source_bucket, target_bucket, prefix)
    same = judge(source_s3, target_s3, source_bucket, target_bucket, settings=settings)
    total, lock = VersionsOutcome(), threading.Lock()

    def settle(key: str, source: list[Entry], target: list[Entry]) -> None:
        plan = plan_chain(source, target, same)
        found.add(key, source, target, plan)
        progress(compared=len(source), to_copy=len(plan.append) if source or delete else 0)
        if plan.equal or (not source and not delete):
            return
        done = VersionsOutcome(planned=1)
        # Both chains read again after the writes, until equal (lambdas/s3_versions.sync_chain): the
        # listings may be old by now, and live sync may have written the key meanwhile.
        synced = sync_chain(target_s3, source_bucket, target_bucket, key, multipart_threshold, part_size,
                            s3_source=source_s3, known=(source, target), settings=settings)
        done.versions, done.markers, done.removed, done.bytes = (synced.versions, synced.markers, synced.removed,
                                                                 synced.bytes)
        progress(copied=done.versions + done.markers, bytes_copied=done.bytes)
        with lock:
            for name in ("versions", "markers", "removed", "bytes", "planned"):
                setattr(total, name, getattr(total, name) + getattr(done, name))

    pairs = paired_chains(source_s3, target_s3, source_bucket, target_bucket, prefix, page_size)
    each_key(pairs, settle, threads, stopping,
             f"the copy of the histories of {source_bucket} into {target_bucket} stopped after the keys in hand")
    total.found = found.report()
    return total
