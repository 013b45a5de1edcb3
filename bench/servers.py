"""The local services a benchmark runs against: moto's server, a Prefect server, a latency proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, stop, wait_for  # noqa: E402

BIN = Path(sys.executable).parent


@dataclass
class Services:
    moto: str  # direct endpoint
    proxied: str | None  # the same server behind the latency proxy
    prefect_env: dict


@contextmanager
def local_services(latency_ms: float | None = None, prefect: bool = True):
    """Start moto (own process), optionally a Prefect server and a latency proxy; stop them after."""
    moto_port, proxy_port, prefect_port = free_port(), free_port(), free_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}")
    os.environ.pop("AWS_PROFILE", None)
    home = ROOT / "bench" / "results" / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    prefect_env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} if prefect else {}
    processes = [subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for(f"http://127.0.0.1:{moto_port}/moto-api/", 30, processes[0])
        if prefect:
            processes.append(subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                env={**os.environ, **prefect_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(f"{prefect_env['PREFECT_API_URL']}/health", 120, processes[-1])
        proxied = None
        if latency_ms is not None:
            processes.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "latency_proxy.py"),
                                               str(proxy_port), str(moto_port), str(latency_ms)]))
            proxied = f"http://127.0.0.1:{proxy_port}"
            wait_for(f"{proxied}/moto-api/", 30, processes[-1])
        yield Services(f"http://127.0.0.1:{moto_port}", proxied, prefect_env)
    finally:
        for process in reversed(processes):
            stop(process)


@contextmanager
def aws_proxy(moto: str):
    """tests/aws_proxy.py in front of the moto server at `moto` (AWS's capacity figures, and faults
    when asked for); yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "aws_proxy.py"), str(port),
                                moto.rsplit(":", 1)[1]])
    try:
        wait_for(f"http://127.0.0.1:{port}/proxy-api/consumed", 30, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()


def ferry(endpoint: str, prefect_env: dict, *args: str) -> tuple[float, dict]:
    """Run `ferry ARGS --json` against `endpoint`: (seconds, its JSON). A failure stops the benchmark."""
    env = {**os.environ, **prefect_env, "AWS_ENDPOINT_URL": endpoint}
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ferry"), *args, "--json"], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"ferry {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])
