"""prefect.yaml works: deploy to a process work pool, run `migrate-table/migrate-table` by name."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import BIN
from tables import by_key, create_table, put_items, scan_all, simple_items

ROOT = Path(__file__).resolve().parent.parent


def test_migrate_table_deployment_runs_with_source_and_target_parameters(dynamodb, run_ferry):
    create_table(dynamodb, "orders")
    put_items(dynamodb, "orders", simple_items(120))
    env = {**run_ferry.env(), "PREFECT": str(BIN / "prefect")}

    deployed = subprocess.run([str(ROOT / "deployments" / "deploy.sh")], env=env, capture_output=True, text=True,
                              timeout=180)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    started = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "migrate-table/migrate-table",
         "-p", "source=orders", "-p", "target=orders-v2", "-p", "create_target=true"],
        env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "ferry", "--run-once"],
                            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

    assert by_key(scan_all(dynamodb, "orders-v2"), "pk") == by_key(scan_all(dynamodb, "orders"), "pk")
    status = run_ferry("status", "orders", "orders-v2", "--json")
    assert status.json["migrations"][0]["phase"] == "done"
