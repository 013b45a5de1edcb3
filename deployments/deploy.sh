#!/usr/bin/env bash
# Create Ferry's process work pool (once) and deploy every flow in prefect.yaml.
# Needs PREFECT_API_URL pointing at a Prefect server (e.g. `prefect server start`).
set -euo pipefail
cd "$(dirname "$0")/.."
export FERRY_HOME="$PWD"
PREFECT="${PREFECT:-.venv/bin/prefect}"
"$PREFECT" work-pool inspect ferry >/dev/null 2>&1 || "$PREFECT" work-pool create ferry --type process
"$PREFECT" --no-prompt deploy --all
