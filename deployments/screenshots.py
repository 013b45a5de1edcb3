"""Screenshots of the journey in the Prefect UI, for the README, with headless Chromium.

    .venv/bin/python deployments/screenshots.py [OUT_DIR]     (default docs/screenshots)

Needs PREFECT_API_URL pointing at the server whose UI to show (the UI is at the same address,
without /api) and Debian's `chromium` (or chromium-browser / google-chrome) on PATH. It finds the
newest run of migrate-plan and the newest paused cutover run (run `ferry deploy PLAN`, then the
two deployments, first) and saves their pages, so the README's pictures stay true as the UI changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--virtual-time-budget=15000", "--window-size=1600,1000"]


def newest_run(client, flow_name: str, state: str | None = None):
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateName)
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[state]))) if state else None
    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                 flow_run_filter=run_filter, sort=FlowRunSort.START_TIME_DESC, limit=1)
    return runs[0] if runs else None


def main() -> int:
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        print("screenshots: no Chromium found (install Debian's `chromium`)", file=sys.stderr)
        return 2
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        print("screenshots: set PREFECT_API_URL to the server to show", file=sys.stderr)
        return 2
    ui = api.removesuffix("/").removesuffix("/api")
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from prefect.client.orchestration import get_client

    pages = {"deployments.png": f"{ui}/deployments"}
    with get_client(sync_client=True) as client:
        if run := newest_run(client, "migrate-plan"):
            pages["migrate-plan-run.png"] = f"{ui}/runs/flow-run/{run.id}"
        if run := newest_run(client, "cutover", "Paused"):
            pages["cutover-approval.png"] = f"{ui}/runs/flow-run/{run.id}"
    for name, url in pages.items():
        subprocess.run([browser, *FLAGS, f"--screenshot={out / name}", url], check=True, capture_output=True)
        print(f"saved {out / name} ({url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
