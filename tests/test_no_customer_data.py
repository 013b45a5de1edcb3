"""No customer data anywhere: item values, object bodies, metadata and tag values never leave the data path.

A canary string is put in every attribute of the source items (inside maps, lists and sets too, and
as binary), in object bodies, user metadata and tags. The table, bucket, sync, verify (with repair)
and status commands then run with DEBUG logging, through the fault proxy, with Prefect's result
persistence on; the table commands also with it off (persistence on writes everything it writes when
off, and the results besides). The canary, plainly or base64-encoded, must appear nowhere: not in what the
commands print, not in the report files, not in the Prefect server's database or anywhere under
PREFECT_HOME (logs, parameters, results, artifacts). Keys may appear; they carry no canary.
"""

from __future__ import annotations

import base64
from pathlib import Path

import boto3
import pytest

from tables import create_table, put_items

CANARY = "CANARY-9f41c07e2b-CUSTOMER-SECRET"


def canary_item(n: int, mark: str = "") -> dict:
    value = f"{CANARY}{mark}{n}"
    return {
        "pk": {"S": f"k{n:04d}"},
        "s": {"S": value},
        "b": {"B": value.encode()},
        "ss": {"SS": [value, f"{value}-2"]},
        "bs": {"BS": [value.encode()]},
        "l": {"L": [{"S": value}, {"M": {"deep": {"S": value}}}]},
        "m": {"M": {"inner": {"S": value}, "list": {"L": [{"B": value.encode()}]}}},
        "n": {"N": str(n)},
    }


def forms(canary: str) -> list[bytes]:
    """The canary as written and as base64 (standard and URL-safe) at each of the three byte alignments."""
    raw = canary.encode()
    found = [raw]
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            found.append(encode(b"\0" * offset + raw)[4 if offset else 0:-4])
    return found


def leaks(blob: bytes) -> list[bytes]:
    return [form for form in forms(CANARY) if form in blob]


@pytest.mark.parametrize("persistence", ["off", "on"])
def test_the_canary_appears_in_no_output_report_log_parameter_result_or_database(aws, run_ferry, aws_proxy,
                                                                                 prefect_api, tmp_path, persistence):
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    create_table(dynamodb, "src")
    put_items(dynamodb, "src", [canary_item(n) for n in range(40)])
    s3.create_bucket(Bucket="src-bucket")
    s3.create_bucket(Bucket="dst-bucket")
    for n in range(12):
        s3.put_object(Bucket="src-bucket", Key=f"obj-{n:02d}", Body=f"{CANARY} body {n}".encode(),
                      Metadata={"secret": f"{CANARY}-meta"}, Tagging=f"secret={CANARY}-tag")
    reports = tmp_path / "reports"
    env = {**aws_proxy.env(), "PREFECT_LOGGING_LEVEL": "DEBUG",
           "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true" if persistence == "on" else "false"}
    aws_proxy.inject(seed=11, throttle=0.05, server_error=0.02, drop=0.01, unprocessed=0.1)
    outputs: list[str] = []

    def ferry(*args: str, ok=(0,)) -> None:
        result = run_ferry(*args, env=env)
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode in ok, (args, result.stdout, result.stderr)

    ferry("table", "src", "dst", "--create-target", "--json", "--verbose")
    dynamodb.put_item(TableName="dst", Item=canary_item(3, "-drifted"))  # differences for the report and repair
    dynamodb.delete_item(TableName="dst", Key={"pk": {"S": "k0004"}})
    dynamodb.put_item(TableName="dst", Item=canary_item(99, "-extra"))
    ferry("verify", "table", "src", "dst", "--report-dir", str(reports), "--json", "--verbose", ok=(1,))
    ferry("verify", "table", "src", "dst", "--repair", "--report-dir", str(reports), "--json", "--verbose")
    dynamodb.put_item(TableName="src", Item=canary_item(50, "-live"))
    ferry("sync", "table", "src", "dst", "--until-idle", "1", "--json", "--verbose")
    ferry("status", "table", "src", "dst", "--json")
    with_buckets = persistence == "on"  # once, where results are persisted too: the superset of places written
    if with_buckets:
        bucket_commands(ferry, s3, reports)
    injected = aws_proxy.injected()

    # the data did travel: the canary is in the targets, so its absence elsewhere means something
    assert CANARY in dynamodb.get_item(TableName="dst", Key={"pk": {"S": "k0050"}})["Item"]["s"]["S"]
    if with_buckets:
        assert CANARY.encode() in s3.get_object(Bucket="dst-bucket", Key="obj-live")["Body"].read()
    assert injected.get("throttle", 0) + injected.get("server_error", 0) > 0, injected
    written = sorted(reports.rglob("*"))
    assert any(p.suffix == ".csv" for p in written) and "k0004" in "".join(
        p.read_text() for p in written if p.is_file())  # the reports name keys
    assert [i for i, text in enumerate(outputs) if leaks(text.encode())] == []
    leaked_files = [str(p) for p in written if p.is_file() and leaks(p.read_bytes())]
    assert leaked_files == []
    assert leaks(base64.b64encode(b"xy" + CANARY.encode() + b"z")) and leaks(f'"{CANARY}"'.encode())  # it can see
    home = Path(prefect_api["PREFECT_HOME"])
    stored = [p for p in home.rglob("*") if p.is_file()]
    database = b"".join(p.read_bytes() for p in stored if p.name.startswith("prefect.db"))
    assert b"k0004" in database  # the server's database is searched, and holds this run's report of keys
    if persistence == "on":
        assert any("storage" in p.parts for p in stored)  # results were persisted, and are searched
    leaked_files = [str(p.relative_to(home)) for p in stored if leaks(p.read_bytes())]
    assert leaked_files == []


def bucket_commands(ferry, s3, reports) -> None:
    """Migrate, verify (report, repair), sync and show the bucket, with differences made for the report."""
    ferry("bucket", "src-bucket", "dst-bucket", "--json", "--verbose")
    s3.put_object(Bucket="dst-bucket", Key="obj-03", Body=f"{CANARY} drifted".encode(),
                  Metadata={"secret": f"{CANARY}-other"})
    ferry("verify", "bucket", "src-bucket", "dst-bucket", "--deep", "--report-dir", str(reports), "--json",
          "--verbose", ok=(1,))
    ferry("verify", "bucket", "src-bucket", "dst-bucket", "--deep", "--repair", "--report-dir", str(reports),
          "--json", "--verbose")
    s3.put_object(Bucket="src-bucket", Key="obj-live", Body=f"{CANARY} live".encode(), Metadata={"secret": CANARY})
    ferry("sync", "bucket", "src-bucket", "dst-bucket", "--until-idle", "2", "--json", "--verbose")
    ferry("status", "bucket", "src-bucket", "dst-bucket", "--json")
