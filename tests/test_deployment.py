"""prefect.yaml works: deploy to a process work pool, run the migrate deployments by name with a worker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3

from conftest import BIN
from tables import by_key, create_table, put_items, scan_all, simple_items

ROOT = Path(__file__).resolve().parent.parent


def run_deployment(env: dict, name: str, *parameters: str) -> None:
    """Start a run of deployment `name` and let a worker pick it up and finish it."""
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", name,
                              *[arg for p in parameters for arg in ("-p", p)]],
                             env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "ferry", "--run-once"],
                            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]


def test_migrate_deployments_run_with_source_and_target_parameters(dynamodb, run_ferry):
    create_table(dynamodb, "orders")
    put_items(dynamodb, "orders", simple_items(120))
    s3 = boto3.client("s3")
    for bucket in ("media", "media-eu"):
        s3.create_bucket(Bucket=bucket)
    for i in range(30):
        s3.put_object(Bucket="media", Key=f"photos/{i}.jpg", Body=b"x" * i, ContentType="image/jpeg")
    env = {**run_ferry.env(), "PREFECT": str(BIN / "prefect")}

    deployed = subprocess.run([str(ROOT / "deployments" / "deploy.sh")], env=env, capture_output=True, text=True,
                              timeout=180)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    run_deployment(env, "migrate-table/migrate-table", "source=orders", "target=orders-v2", "create_target=true")
    run_deployment(env, "migrate-bucket/migrate-bucket", "source=media", "target=media-eu")

    assert by_key(scan_all(dynamodb, "orders-v2"), "pk") == by_key(scan_all(dynamodb, "orders"), "pk")
    status = run_ferry("status", "orders", "orders-v2", "--json")
    assert status.json["migrations"][0]["phase"] == "done"
    verified = run_ferry("verify", "bucket", "media", "media-eu", "--json")
    assert verified.returncode == 0 and verified.json["target_objects"] == 30
