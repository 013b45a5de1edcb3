"""Shared fixtures: one moto server and one Prefect server per test session, reached over HTTP.

The `ferry` CLI is run as a real subprocess (`run_ferry`), exactly as a user runs it; engine tests
call plain functions with boto3 clients pointed at the same moto server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

BIN = Path(sys.executable).parent
FERRY = str(BIN / "ferry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(f"{endpoint}/moto-api/", 30, server)
    yield endpoint
    stop(server)


@pytest.fixture(scope="session", autouse=True)
def aws_environment(moto_endpoint, tmp_path_factory):
    """Every client in this process and in every `ferry` subprocess talks to the moto server."""
    home = tmp_path_factory.mktemp("home")
    os.environ.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(home / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        # moto delivers a bucket's events as the request is answered: nothing is in transit for long
        # (test_bucket_events.py proves the settle with a delayed message)
        FERRY_EVENT_SETTLE_SECONDS="0.5",
    )
    os.environ.pop("AWS_PROFILE", None)
    yield


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real Prefect server, as users run one; `ferry` subprocesses report their flow runs to it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api"
    wait_for(f"{api}/health", 120, server)
    yield {"PREFECT_API_URL": api, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    stop(server)


# The production mix: 10% throttles, 2% 5xx, 1% dropped connections, 10% of batch entries unprocessed
PRODUCTION_FAULTS = {"throttle": 0.10, "server_error": 0.02, "drop": 0.01, "unprocessed": 0.10}


class AwsProxy:
    """Control of tests/aws_proxy.py: realistic DynamoDB capacity, and faults injected on request."""

    def __init__(self, url: str):
        self.url = url

    def consumed(self) -> dict[str, float]:
        return json.loads(urllib.request.urlopen(f"{self.url}/proxy-api/consumed").read())

    def inject(self, **faults) -> None:
        """Set the faults (seed, throttle, server_error, drop, unprocessed, latency_ms); none: no faults."""
        request = urllib.request.Request(f"{self.url}/proxy-api/faults", data=json.dumps(faults).encode(),
                                         method="POST")
        urllib.request.urlopen(request).read()

    def injected(self) -> dict[str, int]:
        """How many of each fault were injected since the last `inject`, and how many requests passed."""
        return json.loads(urllib.request.urlopen(f"{self.url}/proxy-api/faults").read())

    def env(self) -> dict[str, str]:
        """The environment that sends every AWS call of a `ferry` run through the proxy."""
        return {"AWS_ENDPOINT_URL": self.url}


@pytest.fixture(scope="session")
def aws_proxy_server(moto_endpoint):
    port = free_port()
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).parent / "aws_proxy.py"), str(port),
                              moto_endpoint.rsplit(":", 1)[1]])
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(f"{endpoint}/proxy-api/consumed", 30, proxy)
    yield AwsProxy(endpoint)
    proxy.kill()


@pytest.fixture
def aws_proxy(aws_proxy_server, aws):
    """moto's server behind tests/aws_proxy.py, with no faults until the test asks for them (and none after)."""
    aws_proxy_server.inject()
    yield aws_proxy_server
    aws_proxy_server.inject()


@pytest.fixture
def capacity_proxy(aws_proxy):
    """The proxy as a capacity meter: point a `ferry` run at it with AWS_ENDPOINT_URL_DYNAMODB."""
    return aws_proxy


@pytest.fixture
def aws(moto_endpoint):
    """A clean moto: every test starts with no tables, streams or buckets."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).read()
    return moto_endpoint


@pytest.fixture
def dynamodb(aws):
    return boto3.client("dynamodb")


@pytest.fixture
def s3(aws):
    """A clean moto with two empty buckets, src-bucket and dst-bucket, made as AWS makes buckets
    today: object ACLs disabled (Bucket owner enforced). A test of ACLs enables them (and moto
    answers GetObjectAcl of an object uploaded in parts with a 500: see ../shared/LOCAL_AWS.md)."""
    client = boto3.client("s3")
    for bucket in ("src-bucket", "dst-bucket"):
        client.create_bucket(Bucket=bucket)
        client.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    return client


@dataclass
class FerryRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_ferry(prefect_api, aws):
    """Run the installed `ferry` command as a user would, against moto and the Prefect server."""

    def run(*args: str, timeout: float = 300, env: dict | None = None, **popen) -> FerryRun:
        completed = subprocess.run([FERRY, *args], env={**os.environ, **prefect_api, **(env or {})},
                                   capture_output=True, text=True, timeout=timeout, **popen)
        return FerryRun(completed.returncode, completed.stdout, completed.stderr)

    def python(code: str, timeout: float = 300) -> FerryRun:
        """Run Python code (flows called directly, as a deployment's worker would) in a new process."""
        completed = subprocess.run([sys.executable, "-c", code], env={**os.environ, **prefect_api},
                                   capture_output=True, text=True, timeout=timeout)
        return FerryRun(completed.returncode, completed.stdout, completed.stderr)

    run.env = lambda: {**os.environ, **prefect_api}
    run.python = python
    return run
