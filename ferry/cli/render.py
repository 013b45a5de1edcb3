"""How results look: rich tables on stdout, progress on stderr, and the JSON objects of `--json`.

The JSON keys are a contract (scripts read them); the tables are for people. Nothing here shows an
item's or an object's contents: keys, counts, sizes, checksums and timings only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)

MIGRATION_KEYS = ("source", "target", "source_items", "target_items", "copied", "resumed", "verified", "segments",
                  "stream_records", "source_checksum", "target_checksum")
BUCKET_MIGRATION_KEYS = ("source", "target", "source_objects", "target_objects", "copied", "deleted", "bytes_copied",
                         "verified", "events_applied", "archived", "archived_bytes", "restores_started",
                         "restores_pending", "restored_copied")
VERSIONS_KEYS = ("all_versions", "versions_copied", "delete_markers_copied", "version_map")  # added to the JSON


def unless(json_output: bool, display: Callable[[], contextlib.AbstractContextManager]):
    """The live display while a flow runs, except with --json (stdout is then for the JSON line)."""
    return contextlib.nullcontext() if json_output else display()


# --- tables --------------------------------------------------------------------------------------
def backfill_estimate(job, source: dict, target: dict | None) -> str | None:
    """One line, before a rate-limited backfill starts: how long it will take at the limits set."""
    from ferry.dynamo.capacity import backfill_seconds, configured_rate

    read = configured_rate(job.max_read_units, job.read_capacity_percent, source, "read")
    write = configured_rate(job.max_write_units, job.write_capacity_percent, target or source, "write")
    items, size = source.get("ItemCount", 0), source.get("TableSizeBytes", 0)
    seconds = backfill_seconds(items, size, read, write)
    if seconds is None:
        return None
    limits = ", ".join(f"{name} {rate:,.0f} units/s" for name, rate in (("reads", read), ("writes", write)) if rate)
    return (f"backfill of ~{items:,} items ({size / 2**20:,.1f} MiB) at {limits}: about {duration(seconds)} "
            "(live sync runs beside it, unlimited)")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def migration_json(result, elapsed: float) -> dict:
    return {k: asdict(result)[k] for k in MIGRATION_KEYS} | {"seconds": round(elapsed, 2)}


def migration(result, elapsed: float, verify: bool) -> None:
    summary = Table(title=f"{result.source} -> {result.target}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("copied by this run", f"{result.copied:,} items")
    summary.add_row("stream changes replayed", f"{result.stream_records:,}")
    summary.add_row("segments", str(result.segments))
    summary.add_row("resumed an earlier run", "yes" if result.resumed else "no")
    if verify:
        summary.add_row("source items / checksum", f"{result.source_items:,} / {result.source_checksum}")
        summary.add_row("target items / checksum", f"{result.target_items:,} / {result.target_checksum}")
        summary.add_row("verified", "[green]EQUAL[/green]" if result.verified else "[red]DIFFERENT[/red]")
    else:
        summary.add_row("verified", "skipped (--no-verify)")
    summary.add_row("time", f"{elapsed:.1f}s")
    out.print(summary)


def verification(result) -> None:
    from ferry import report as reports  # pandas: imported only by the commands that report

    table = Table(title=f"{result.source} = {result.target} ?")
    for column in ("side", "table", "items", "checksum"):
        table.add_column(column)
    table.add_row("source", result.source, f"{result.source_items:,}", result.source_checksum)
    table.add_row("target", result.target, f"{result.target_items:,}", result.target_checksum)
    out.print(table)
    differences = reports.differences_frame(result)
    if not differences.empty:
        listed = Table(title=f"differences ({len(differences)})")
        listed.add_column("kind")
        listed.add_column("key")
        for row in differences.head(20).itertuples():
            listed.add_row(row.kind, row.key)
        out.print(listed)
    out.print(reports.headline(result), style="green" if result.equal else "red", highlight=False)


def live_sync_summary(source: str, target: str, result, elapsed: float) -> dict:
    """The JSON result of `ferry sync table`: records applied and the lag's percentiles."""
    lags = sorted(result.lag_seconds) or [0.0]
    return {"source": source, "target": target, "records": result.records, "rejected": result.rejected,
            "shards": result.shards, "lag_p50_seconds": round(lags[len(lags) // 2], 3),
            "lag_p99_seconds": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3),
            "lag_max_seconds": round(lags[-1], 3), "seconds": round(elapsed, 2)}


def live_sync(result, summary: dict) -> None:
    out.print(f"applied {result.records:,} stream records from {result.shards} shard(s) in {summary['seconds']:.1f}s; "
              f"{result.rejected} rejected (see 'ferry status'); lag p50 {summary['lag_p50_seconds']}s, "
              f"p99 {summary['lag_p99_seconds']}s", highlight=False)


def migration_state_json(m) -> dict:
    return {
        "migration": m.migration_id, "source": m.source, "target": m.target, "phase": str(m.phase),
        "copied": m.copied, "segments": m.total_segments, "segments_done": m.segments_done,
        "runs": m.runs, "started_at": m.started_at, "updated_at": m.updated_at, "stream_arn": m.stream_arn,
        "dead_letters": m.dead_letters, "shards": m.shards,
        "live_sync": None if m.live_sync is None else {
            "mode": m.live_sync.mode, "lag_seconds": round(m.live_sync.lag_seconds, 3),
            "last_batch_seconds_ago": round(m.live_sync.since(), 1), "last_batch_records": m.live_sync.records},
        "segment_progress": [
            {"segment": n, "items": m.segment(n).items, "pages": m.segment(n).pages, "done": m.segment(n).done}
            for n in range(m.total_segments)
        ],
    }


def migration_states(migrations: list, state_table: str, one: bool) -> None:
    """The overview of recorded migrations; for one migration, its segments too."""
    if not migrations:
        out.print(f"no migrations recorded in {state_table!r}")
        return
    overview = Table(title="Ferry migrations")
    for column in ("migration", "phase", "copied", "segments done", "live sync (lag, last batch)", "runs", "updated"):
        overview.add_column(column)
    for m in migrations:
        live = ("-" if m.live_sync is None else
                f"{m.live_sync.mode}: {m.live_sync.lag_seconds:.1f}s lag, {m.live_sync.since():.0f}s ago")
        overview.add_row(m.migration_id, str(m.phase), f"{m.copied:,}", f"{m.segments_done}/{m.total_segments}",
                         live, str(m.runs), m.updated_at)
    out.print(overview)
    if one:
        detail = Table(title="segments")
        for column in ("segment", "items", "pages", "state"):
            detail.add_column(column)
        for n in range(migrations[0].total_segments):
            seg = migrations[0].segment(n)
            detail.add_row(str(n), f"{seg.items:,}", str(seg.pages),
                           "done" if seg.done else ("copying" if seg.pages else "waiting"))
        out.print(detail)


# --- buckets -------------------------------------------------------------------------------------
def bucket_migration_json(result, elapsed: float) -> dict:
    return {k: getattr(result, k) for k in BUCKET_MIGRATION_KEYS + VERSIONS_KEYS} | {"seconds": round(elapsed, 2)}


def bucket_migration(result, elapsed: float) -> None:
    summary = Table(title=f"{result.source} -> {result.target}", show_header=False)
    for name in BUCKET_MIGRATION_KEYS + (VERSIONS_KEYS[1:] if result.all_versions else ()):
        value = getattr(result, name)
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        summary.add_row(name.replace("_", " "), shown)
    summary.add_row("time", f"{elapsed:.1f}s")
    out.print(summary)


def bucket_verification(report) -> None:
    from ferry import report as reports

    listed = Table(title=f"{report.source} = {report.target} ?")
    for column in ("kind", "count", "first keys"):
        listed.add_column(column)
    for kind in ("missing", "extra", "changed"):
        keys = getattr(report, kind)
        listed.add_row(kind, str(len(keys)), ", ".join(keys[:5]))
    out.print(listed)
    out.print(reports.bucket_headline(report), style="green" if report.equal else "red", highlight=False)


def bucket_sync_status(status) -> None:
    shown = Table(title=f"live sync {status.source} -> {status.target}", show_header=False)
    shown.add_row("event queue", status.queue)
    shown.add_row("events routed", f"yes ({status.events_via})" if status.events_routed else "NO")
    shown.add_row("queued / in flight", f"{status.pending:,} / {status.in_flight:,}")
    shown.add_row("dead letters", f"{status.dead_letters:,}")
    shown.add_row("lag", "not measured yet" if status.lag_seconds is None else
                  f"{status.lag_seconds:.1f}s (measured {duration(status.lag_measured_seconds_ago)} ago)")
    shown.add_row("applied by", "Lambda (" + ", ".join(status.lambda_mappings) + ")" if status.lambda_mappings
                  else "the poller (ferry sync bucket)")
    out.print(shown)


# --- plans ---------------------------------------------------------------------------------------
def plan_run(payload: dict, elapsed: float) -> None:
    table = Table(title=f"plan {payload['plan']}", title_justify="left")
    for column in ("kind", "source", "target", "copied", "verified"):
        table.add_column(column)
    for r in payload["resources"]:
        table.add_row(r["kind"], r["source"], r["target"], f"{r['copied']:,}", "yes" if r["verified"] else "NO")
    out.print(table)
    verdict = "every resource verified" if payload["verified"] else "differences remain"
    out.print(f"{verdict} in {duration(elapsed)}; keep them in step with 'ferry sync plan PLAN', then "
              "'ferry cutover PLAN'", highlight=False)


def plan_cutover(payload: dict) -> None:
    table = Table(title=f"cutover of {payload['plan']}", title_justify="left")
    for column in ("kind", "pair", "gate", "result", "detail"):
        table.add_column(column)
    for g in payload["gates"]:
        table.add_row(g["kind"], f"{g['source']} -> {g['target']}", g["gate"], "passed" if g["passed"] else "FAILED",
                      g["detail"])
    out.print(table)
    for name, change in payload["parameters"].items():
        out.print(f"switched {name}: {change['old']} -> {change['new']}", highlight=False)
    out.print("reverse sync runs: keep it going with 'ferry sync plan PLAN'; 'ferry rollback PLAN' goes back"
              if payload["reverse_sync"] else "switched (no reverse sync)", highlight=False)


def plan_status(payload: dict) -> None:
    table = Table(title=f"plan {payload['plan']}: live sync {payload['direction']}"
                        f"{' (cutover: ' + ', '.join(payload['cutover_steps']) + ')' if payload['cutover_steps'] else ''}",
                  title_justify="left")
    for column in ("kind", "source", "target", "phase", "progress", "direction", "lag", "verified"):
        table.add_column(column)
    for r in payload["resources"]:
        lag = f"{r['lag_seconds']:.1f} s" if r.get("lag_seconds") is not None else (
            f"{r['pending_events']} pending" if r.get("pending_events") is not None else "-")
        verified = {True: "yes", False: "NO", None: "-"}[r["verified"]]
        table.add_row(r["kind"], r["source"], r["target"], r["phase"], r["progress"], r["direction"], lag, verified)
    out.print(table)
