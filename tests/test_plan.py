"""Plans against the moto server and a real Prefect server: the file's validation, `ferry run`, the
cutover (gates, approval, switch, reverse sync), rollback, kills during the cutover, and deployments."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest

from conftest import BIN, FERRY
from tables import by_key, create_table, put_items, scan_all, simple_items
from writers import LiveWriter

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plan.yaml"
PARAMETERS = {"/orders-service/table": ("orders", "orders-v2"), "/orders-service/bucket": ("media", "media-v2")}

SMALL_PLAN = """\
name: orders-service
tables:
  - {source: orders, target: orders-v2, create_target: true}
buckets:
  - {source: media, target: media-v2}
cutover:
  parameters:
    - {name: /orders-service/table, value: orders-v2}
    - {name: /orders-service/bucket, value: media-v2}
  max_lag_seconds: 5
  reverse_sync: true
"""


def write_plan(tmp_path: Path, text: str = SMALL_PLAN) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return str(path)


def set_up_sources(dynamodb, tables=("orders",), buckets=("media",), items: int = 60) -> None:
    """Source tables with items, source buckets with objects (and empty targets), the service's parameters."""
    s3 = boto3.client("s3")
    for table in tables:
        create_table(dynamodb, table)
        put_items(dynamodb, table, simple_items(items))
    for bucket in buckets:
        for name in (bucket, f"{bucket}-v2"):
            s3.create_bucket(Bucket=name)
        for i in range(12):
            s3.put_object(Bucket=bucket, Key=f"2026/{i}.bin", Body=os.urandom(64 + i))
    ssm = boto3.client("ssm")
    for name, (old, _) in PARAMETERS.items():
        ssm.put_parameter(Name=name, Value=old, Type="String")


def parameter(name: str) -> tuple[str | None, int]:
    try:
        found = boto3.client("ssm").get_parameter(Name=name)["Parameter"]
    except boto3.client("ssm").exceptions.ParameterNotFound:
        return None, 0
    return found["Value"], found["Version"]


def same_table(dynamodb, a: str, b: str) -> bool:
    return by_key(scan_all(dynamodb, a), "pk") == by_key(scan_all(dynamodb, b), "pk")


def keys(bucket: str) -> dict[str, int]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


class BucketWriter(threading.Thread):
    """Puts new objects and deletes old ones in `bucket` until stopped."""

    def __init__(self, bucket: str):
        super().__init__(daemon=True)
        self.bucket, self.writes, self.stopping = bucket, 0, threading.Event()

    def run(self) -> None:
        s3 = boto3.client("s3")
        while not self.stopping.is_set():
            s3.put_object(Bucket=self.bucket, Key=f"2026/live-{self.writes}.bin", Body=os.urandom(32))
            if self.writes % 3 == 2:
                s3.delete_object(Bucket=self.bucket, Key=f"2026/live-{self.writes - 1}.bin")
            self.writes += 1
            time.sleep(0.1)


# --- the plan file -----------------------------------------------------------------------------

BAD_PLANS = {
    "unknown top-level field": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\ncutovr: {}\n",
                                4, "cutovr", "unknown field"),
    "unknown table option": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\n"
                             "  - {source: a1b, target: a1b-v2, segmnts: 4}\n", 4, "tables[1].segmnts", "unknown field"),
    "missing target": ("name: x\nbuckets:\n  - {source: media}\n", 3, "buckets[0].target", "missing"),
    "same target twice": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\n"
                          "  - {source: carts, target: orders-v2}\n", 4, "tables[1].target", "earlier entry"),
    "target is a source": ("name: x\ntables:\n  - {source: orders, target: carts}\n"
                           "  - {source: carts, target: carts-v2}\n", 3, "tables[0].target", "also a source"),
    "wrong type": ("name: x\nparallel: four\ntables:\n  - {source: orders, target: orders-v2}\n",
                   2, "parallel", "integer"),
    "bad value through the command's rule": ("name: x\ntables:\n  - source: orders\n    target: orders-v2\n"
                                             "    segments: 0\n", 3, "tables[0]", "--segments"),
    "bad lag": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\ncutover:\n  max_lag_seconds: -1\n",
                5, "cutover.max_lag_seconds", "more than 0"),
    "parameter twice": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\ncutover:\n  parameters:\n"
                        "    - {name: /a, value: b}\n    - {name: /a, value: c}\n", 7, "cutover.parameters[1].name",
                        "twice"),
    "same source twice": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\n"
                          "  - {source: orders, target: orders-v3}\n", 4, "tables[1].source", "earlier entry"),
    "state table in the plan": ("name: x\nstate_table: orders-v2\ntables:\n  - {source: orders, target: orders-v2}\n",
                                4, "tables[0]", "state_table"),
    "bad cron": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\nschedules: {resync: '99 * * * *'}\n",
                 4, "schedules.resync", "cron"),
    "reserved parameter name": ("name: x\ntables:\n  - {source: orders, target: orders-v2}\ncutover:\n  parameters:\n"
                                "    - {name: /aws/x, value: b}\n", 6, "cutover.parameters[0].name", "reserved"),
    "wrong bucket option type": ("name: x\nbuckets:\n  - {source: media, target: media-v2, delete: maybe}\n",
                                 3, "buckets[0].delete", "boolean"),
    "not yaml": ("name: x\ntables: [\n", 3, "", "not valid YAML"),
    "nothing to move": ("name: x\n", 1, "", "no tables and no buckets"),
}


@pytest.mark.parametrize("case", BAD_PLANS, ids=list(BAD_PLANS))
def test_a_bad_plan_is_one_line_naming_file_line_and_field_and_nothing_is_written(case, tmp_path, dynamodb, run_ferry):
    text, line, field_name, problem = BAD_PLANS[case]
    create_table(dynamodb, "orders")  # a real source: only the plan is wrong
    path = write_plan(tmp_path, text)
    for command in (("run", path), ("cutover", path, "--yes")):
        result = run_ferry(*command)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ferry: error: {path}:{line}: "), lines
        assert field_name in lines[0] and problem in lines[0], lines[0]
    assert dynamodb.list_tables()["TableNames"] == ["orders"]  # no target, no state table
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert boto3.client("ssm").describe_parameters()["Parameters"] == []


def test_the_example_plan_is_valid_as_written():
    from ferry.plan import load_plan

    plan = load_plan(EXAMPLE)
    assert [(t.source, t.target) for t in plan.table_jobs()] == [("orders", "orders-v2"), ("customers", "customers-v2")]
    assert [(b.target, b.source) for b in plan.bucket_jobs(reverse=True)] == [("media", "media-v2"),
                                                                            ("invoices", "invoices-v2")]
    assert plan.schedules.resync == "*/10 * * * *"


# --- the journey -------------------------------------------------------------------------------

def test_the_example_plan_runs_cuts_over_syncs_back_and_rolls_back(dynamodb, run_ferry):
    set_up_sources(dynamodb, tables=("orders", "customers"), buckets=("media", "invoices"))
    writer, bucket_writer = LiveWriter("orders", existing=60, rate_per_second=30), BucketWriter("media")
    writer.start()
    bucket_writer.start()
    try:
        ran = run_ferry("run", str(EXAMPLE), "--json")
    finally:
        writer.stopping.set()
        bucket_writer.stopping.set()
        writer.join()
        bucket_writer.join()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sum(writer.counts.values()) > 20 and bucket_writer.writes > 10  # the service wrote during the run
    assert ran.json["plan"] == "orders-service" and ran.json["verified"] is True
    assert {(r["kind"], r["source"], r["target"], r["verified"]) for r in ran.json["resources"]} == {
        ("table", "orders", "orders-v2", True), ("table", "customers", "customers-v2", True),
        ("bucket", "media", "media-v2", True), ("bucket", "invoices", "invoices-v2", True)}

    cut = run_ferry("cutover", str(EXAMPLE), "--yes", "--json")
    assert cut.returncode == 0, cut.stderr
    assert cut.json["switched"] is True and cut.json["reverse_sync"] is True
    assert cut.json["parameters"] == {name: {"old": old, "new": new} for name, (old, new) in PARAMETERS.items()}
    assert {(g["source"], g["gate"]) for g in cut.json["gates"] if g["passed"]} == {
        (s, gate) for s in ("orders", "customers", "media", "invoices") for gate in ("lag", "verified")}
    assert same_table(dynamodb, "orders", "orders-v2") and same_table(dynamodb, "customers", "customers-v2")
    for name, (_, new) in PARAMETERS.items():
        assert parameter(name) == (new, 2)

    # the service now writes to the new home; reverse sync carries it back
    dynamodb.put_item(TableName="orders-v2", Item={"pk": {"S": "written-after-cutover"}, "n": {"N": "1"}})
    dynamodb.delete_item(TableName="customers-v2", Key={"pk": {"S": "k0000003"}})
    boto3.client("s3").put_object(Bucket="media-v2", Key="2026/after-cutover.bin", Body=b"new home")
    boto3.client("s3").put_object(Bucket="invoices-v2", Key="2026/after-cutover.pdf", Body=b"new home")
    for forward in (("table", "orders", "orders-v2"), ("sync", "bucket", "media", "media-v2", "--until-idle", "1")):
        refused = run_ferry(*forward)  # the old direction stays stopped, however it is asked for
        assert refused.returncode == 2 and "stopped by plan 'orders-service'" in refused.stderr, (forward, refused)
    synced = run_ferry("sync", "plan", str(EXAMPLE), "--until-idle", "2", "--json")
    assert synced.returncode == 0, synced.stderr
    assert {(r["source"], r["target"]) for r in synced.json["resources"]} == {
        ("orders-v2", "orders"), ("customers-v2", "customers"), ("media-v2", "media"), ("invoices-v2", "invoices")}
    assert same_table(dynamodb, "orders", "orders-v2") and same_table(dynamodb, "customers", "customers-v2")
    assert "pk" in dynamodb.get_item(TableName="orders", Key={"pk": {"S": "written-after-cutover"}}).get("Item", {})
    assert keys("media")["2026/after-cutover.bin"] == 8 and keys("invoices")["2026/after-cutover.pdf"] == 8
    status = run_ferry("status", str(EXAMPLE), "--json")
    assert status.returncode == 0 and status.json["direction"] == "reverse"
    assert {r["source"]: r["phase"] for r in status.json["resources"]}["orders"] == "done"

    back = run_ferry("rollback", str(EXAMPLE), "--yes", "--json")
    assert back.returncode == 0, back.stderr
    assert back.json == {"plan": "orders-service", "restored": {name: old for name, (old, _) in PARAMETERS.items()}}
    for name, (old, _) in PARAMETERS.items():
        assert parameter(name) == (old, 3)
    # the old home again: forward live sync carries its writes to the new one
    dynamodb.put_item(TableName="orders", Item={"pk": {"S": "written-after-rollback"}, "n": {"N": "2"}})
    boto3.client("s3").put_object(Bucket="media", Key="2026/after-rollback.bin", Body=b"old home")
    assert run_ferry("sync", "plan", str(EXAMPLE), "--until-idle", "2").returncode == 0
    assert same_table(dynamodb, "orders", "orders-v2")
    assert keys("media-v2")["2026/after-rollback.bin"] == 8
    assert run_ferry("status", str(EXAMPLE), "--json").json["direction"] == "forward"
    assert run_ferry("sync", "table", "orders-v2", "orders", "--until-idle", "1").returncode == 2  # reverse stopped

    # and a second cutover after the rollback: the values of its own moment, reverse sync again
    again = run_ferry("cutover", str(EXAMPLE), "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert again.json["parameters"] == {name: {"old": old, "new": new} for name, (old, new) in PARAMETERS.items()}
    dynamodb.put_item(TableName="orders-v2", Item={"pk": {"S": "after-second-cutover"}, "n": {"N": "3"}})
    assert run_ferry("sync", "plan", str(EXAMPLE), "--until-idle", "2").returncode == 0
    assert same_table(dynamodb, "orders", "orders-v2")
    for name, (_, new) in PARAMETERS.items():
        assert parameter(name) == (new, 4)


def test_a_corrupted_target_fails_the_gate_and_nothing_is_switched(dynamodb, run_ferry, tmp_path):
    set_up_sources(dynamodb)
    path = write_plan(tmp_path)
    assert run_ferry("run", path).returncode == 0
    dynamodb.put_item(TableName="orders-v2", Item={"pk": {"S": "k0000007"}, "payload": {"S": "corrupted"}})

    cut = run_ferry("cutover", path, "--yes", "--json")
    assert cut.returncode == 1, cut.stderr
    assert "gate failed, nothing switched" in cut.stderr and "table orders -> orders-v2: verified" in cut.stderr
    for name, (old, _) in PARAMETERS.items():
        assert parameter(name) == (old, 1)
    assert "StreamSpecification" not in dynamodb.describe_table(TableName="orders-v2")["Table"]  # no reverse capture
    assert run_ferry("sync", "table", "orders", "orders-v2", "--until-idle", "1").returncode == 0  # forward still runs
    assert run_ferry("rollback", path, "--yes").returncode == 2  # nothing to roll back


def test_a_cutover_killed_at_random_moments_ends_like_an_uninterrupted_one(dynamodb, run_ferry, tmp_path):
    set_up_sources(dynamodb)
    path = write_plan(tmp_path)
    assert run_ferry("run", path).returncode == 0
    rng = random.Random(11)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen([FERRY, "cutover", path, "--yes"], env=run_ferry.env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            process.wait(timeout=rng.uniform(3.0, 10.0))
            break  # finished before the kill
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    assert kills >= 2
    final = run_ferry("cutover", path, "--yes", "--json")
    assert final.returncode == 0, final.stderr
    assert final.json["switched"] is True
    for name, (old, new) in PARAMETERS.items():
        assert parameter(name) == (new, 2)  # written exactly once, whatever the kills
        assert final.json["parameters"][name] == {"old": old, "new": new}
    progress = run_ferry("status", path, "--json").json
    assert progress["direction"] == "reverse"
    assert progress["cutover_steps"] == ["gates-passed", "approved", "reverse-prepared", "switched",
                                         "forward-stopped", "reverse-started"]
    dynamodb.put_item(TableName="orders-v2", Item={"pk": {"S": "after-kills"}, "n": {"N": "1"}})
    assert run_ferry("sync", "plan", path, "--until-idle", "2").returncode == 0
    assert same_table(dynamodb, "orders", "orders-v2")
    again = run_ferry("cutover", path, "--yes", "--json")  # a rerun of a finished cutover changes nothing
    assert again.returncode == 0 and all(parameter(name)[1] == 2 for name in PARAMETERS)


# --- approval in the Prefect UI --------------------------------------------------------------------

RUN_CUTOVER = """
from ferry.plan import load_plan
from flows.cutover import cutover
cutover(plan=load_plan({path!r}), approval="ui")
"""

ANSWER = """
import time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName
from prefect.flow_runs import resume_flow_run
with get_client(sync_client=True) as client:
    for _ in range(240):
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))))
        runs = [r for r in runs if r.name == "cutover orders-service"]
        if runs:
            break
        time.sleep(0.5)
    else:
        raise SystemExit("no paused cutover run")
    print(runs[0].state.state_details.run_input_keyset is not None)
resume_flow_run(runs[0].id, run_input={answer!r})
"""


def test_a_paused_cutover_is_rejected_then_approved_with_its_input_form(dynamodb, run_ferry, tmp_path):
    set_up_sources(dynamodb)
    path = write_plan(tmp_path)
    assert run_ferry("run", path).returncode == 0
    for approve in (False, True):  # rejected: nothing switched, and the plan can be cut over again
        paused = subprocess.Popen([str(BIN / "python"), "-c", RUN_CUTOVER.format(path=path)], env=run_ferry.env(),
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        answered = run_ferry.python(ANSWER.format(answer={"approve": approve, "reason": "checked by the on-call"}))
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip() == "True"  # it waited for a form
        out, err = paused.communicate(timeout=180)
        if approve:
            assert paused.returncode == 0, err[-2000:]
            assert all(parameter(name) == (new, 2) for name, (_, new) in PARAMETERS.items())
        else:
            assert paused.returncode != 0 and "NotApproved" in err
            assert all(parameter(name) == (old, 1) for name, (old, _) in PARAMETERS.items())
            status = run_ferry("status", path, "--json").json
            assert status["direction"] == "forward" and "approved" not in status["cutover_steps"]


# --- deployments -----------------------------------------------------------------------------------

def test_ferry_deploy_creates_the_plans_deployments_with_schedules_and_a_run_migrates(dynamodb, run_ferry, tmp_path):
    from test_deployment import run_deployment

    set_up_sources(dynamodb, buckets=())
    path = write_plan(tmp_path, "name: orders-service\ntables:\n  - {source: orders, target: orders-v2, "
                                "create_target: true}\nschedules: {resync: '*/10 * * * *', verify: '0 3 * * *'}\n")
    deployed = run_ferry("deploy", path, "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.json["deployments"] == [f"{flow}/orders-service" for flow in
                                            ("migrate-plan", "sync-plan", "verify-plan", "cutover", "rollback")]
    inspected = run_ferry.python("""
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    found = {}
    for flow in ("migrate-plan", "sync-plan", "verify-plan", "cutover", "rollback"):
        d = client.read_deployment_by_name(f"{flow}/orders-service")
        found[flow] = [s.schedule.cron for s in d.schedules]
print(json.dumps(found))
""")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout.strip().splitlines()[-1]) == {
        "migrate-plan": [], "sync-plan": ["*/10 * * * *"], "verify-plan": ["0 3 * * *"], "cutover": [], "rollback": []}
    run_deployment(run_ferry.env(), "migrate-plan/orders-service")
    assert same_table(dynamodb, "orders", "orders-v2")
    assert run_ferry("status", path, "--json").json["resources"][0]["phase"] == "done"
