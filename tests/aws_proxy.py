"""An HTTP proxy in front of moto's server that makes it behave like AWS under load: capacity and faults.

moto never fails, never throttles and answers every request with a constant ConsumedCapacity. Through
this proxy:
- a DynamoDB request that asks for ReturnConsumedCapacity gets AWS's units: writes one per started KB
  of each item written, reads one per started 4 KB (half for eventually consistent reads; a Scan or
  Query counts the bytes of the items it returns); the units reported are counted per operation;
- faults are injected, per request, with the probabilities set through the control API:
  `only` (a list of DynamoDB operations: every fault hits those alone), `throttle` (DynamoDB ProvisionedThroughputExceededException / ThrottlingException, S3 503 SlowDown),
  `server_error` (HTTP 500 in the service's own error shape), `drop` (the connection is closed without
  an answer: half of them before the request reaches moto, half after moto has acted, so the write
  happened and the client does not know), `unprocessed` (that share of a BatchWriteItem's writes or a
  BatchGetItem's keys is left out of the request and handed back as UnprocessedItems/UnprocessedKeys,
  as AWS does under pressure), and `latency_ms` added to every request.

Seeded: whether a request fails is a hash of the seed, the request (method, path, body) and how many
times that same request was seen before, so a retried request draws again and the same requests meet
the same faults whatever the interleaving of threads. A whole run does not replay exactly: its
requests carry shard iterators, receipt handles and upload IDs, and how often it polls depends on
timing.

    python tests/aws_proxy.py LISTEN_PORT TARGET_PORT
    POST /proxy-api/faults  {"seed": 1, "throttle": 0.1, ...}  -> sets the faults (all others 0), resets counts
    GET  /proxy-api/faults                                       -> {"throttle": injected, ..., "requests": n}
    GET  /proxy-api/consumed                                     -> {"PutItem": units, "Scan": units, ...}
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import sys
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DYNAMODB_TARGET = "DynamoDB_20120810."
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "x-amz-crc32"}
FAULT_KINDS = ("throttle", "server_error", "drop")
SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def value_size(value: dict) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.strip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(item: dict) -> float:
    return float(max(1, -(-item_size(item) // 1024)))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, -(-size // 4096))
    return float(units if consistent else units / 2)


def realistic(operation: str, request: dict, response: dict) -> dict:
    """The response with the ConsumedCapacity AWS would have reported."""
    table = request.get("TableName")
    if operation == "PutItem":
        units = write_units(request["Item"])
    elif operation == "GetItem":
        units = read_units(item_size(response.get("Item", {})), bool(request.get("ConsistentRead")))
    elif operation in ("Scan", "Query"):
        units = read_units(sum(item_size(i) for i in response.get("Items", [])), bool(request.get("ConsistentRead")))
    elif operation == "BatchWriteItem":
        unprocessed = response.get("UnprocessedItems", {})
        capacity = []
        for name, writes in request["RequestItems"].items():
            done = [w for w in writes if w not in unprocessed.get(name, [])]
            capacity.append({"TableName": name, "CapacityUnits": sum(
                write_units(w["PutRequest"]["Item"]) if "PutRequest" in w else 1.0 for w in done)})
        return {**response, "ConsumedCapacity": capacity}
    else:
        return response
    return {**response, "ConsumedCapacity": {"TableName": table, "CapacityUnits": units}}


class Faults:
    """The configured fault probabilities, the draws, and what was injected."""

    def __init__(self, **settings):
        self.seed = int(settings.pop("seed", 0))
        self.latency_ms = float(settings.pop("latency_ms", 0.0))
        self.unprocessed = float(settings.pop("unprocessed", 0.0))
        self.only = set(settings.pop("only", ()))  # DynamoDB operations the faults are limited to (none: all)
        self.rates = {kind: float(settings.pop(kind, 0.0)) for kind in FAULT_KINDS}
        if settings:
            raise ValueError(f"unknown fault settings: {sorted(settings)}")
        self.seen: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()

    def draws(self, method: str, path: str, body: bytes):
        """A deterministic stream of uniform numbers in [0, 1) for this occurrence of this request."""
        digest = hashlib.sha256(body).hexdigest()
        with self.lock:
            self.injected["requests"] += 1
            occurrence = self.seen[(method, path, digest)]
            self.seen[(method, path, digest)] += 1
        index = 0
        while True:
            value = hashlib.sha256(f"{self.seed}|{method}|{path}|{digest}|{occurrence}|{index}".encode()).digest()
            yield int.from_bytes(value[:8], "big") / 2 ** 64
            index += 1

    def fault(self, draws) -> str | None:
        """Which fault (if any) this request meets; `drop` comes out as drop_before or drop_after."""
        roll, edge = next(draws), 0.0
        for kind in FAULT_KINDS:
            edge += self.rates[kind]
            if roll < edge:
                if kind == "drop":
                    kind = "drop_before" if next(draws) < 0.5 else "drop_after"
                self.count(kind)
                return kind
        return None

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.injected[kind] += n

    def report(self) -> dict:
        with self.lock:
            return dict(self.injected)


def hold_back(operation: str, request: dict, faults: Faults, draws) -> tuple[dict, dict]:
    """Leave `faults.unprocessed` of a batch's entries out of the request (at least one stays in):
    (the request to send, what to hand back as unprocessed)."""
    held: dict = {}
    if operation not in ("BatchWriteItem", "BatchGetItem") or not faults.unprocessed:
        return request, held
    items = {}
    for table, entries in request["RequestItems"].items():
        keys = entries["Keys"] if operation == "BatchGetItem" else entries
        kept = [e for e in keys if next(draws) >= faults.unprocessed]
        left = [e for e in keys if e not in kept]
        if left:
            held[table] = left
        if kept:
            items[table] = {**entries, "Keys": kept} if operation == "BatchGetItem" else kept
    if not items:  # AWS always makes some progress on a batch it accepts
        table, left = next(iter(held.items()))
        items[table] = {**request["RequestItems"][table], "Keys": left[:1]} if operation == "BatchGetItem" else left[:1]
        held[table] = left[1:]
        if not held[table]:
            del held[table]
    faults.count("unprocessed", sum(len(v) for v in held.values()))
    if operation == "BatchGetItem":
        held = {t: {**{k: v for k, v in request["RequestItems"][t].items() if k != "Keys"}, "Keys": keys}
                for t, keys in held.items()}
    return {**request, "RequestItems": items}, held


def error_reply(service: str, kind: str, json_protocol: bool, throttle_count: int) -> tuple[int, dict, bytes]:
    """The status, headers and body AWS's `service` would answer with for an injected fault."""
    if service in ("dynamodb", "dynamodbstreams") or json_protocol:
        if kind == "throttle":
            name = ("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
                    if throttle_count % 2 else "com.amazon.coral.availability#ThrottlingException")
            return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
                {"__type": name, "message": "Rate of requests exceeds the allowed throughput."}).encode()
        name = "com.amazonaws.dynamodb.v20120810#InternalServerError" if service.startswith("dynamodb") else "InternalFailure"
        return 500, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
            {"__type": name, "message": "Internal server error"}).encode()
    if kind == "throttle":  # S3; other XML services are not throttled by this proxy
        return 503, {"Content-Type": "application/xml"}, (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>")
    root = b"Error" if service == "s3" else b"ErrorResponse><Error"
    close = b"Error" if service == "s3" else b"Error></ErrorResponse"
    return 500, {"Content-Type": "application/xml"}, (
        b"<?xml version='1.0' encoding='UTF-8'?><" + root + b"><Code>InternalError</Code>"
        b"<Message>We encountered an internal error. Please try again.</Message></" + close + b">")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target_port = 0
    consumed: dict[str, float] = {}
    faults = Faults()
    lock = threading.Lock()
    local = threading.local()

    def log_message(self, *args):  # quiet
        pass

    def upstream(self) -> http.client.HTTPConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=120)
        return self.local.connection

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def control(self, body: bytes) -> None:
        if self.path == "/proxy-api/consumed":
            return self.reply(200, {"Content-Type": "application/json"}, json.dumps(self.consumed).encode())
        if self.command == "POST":
            try:
                Proxy.faults = Faults(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as error:
                return self.reply(400, {"Content-Type": "text/plain"}, str(error).encode())
        self.reply(200, {"Content-Type": "application/json"}, json.dumps(Proxy.faults.report()).encode())

    def forward(self, body: bytes) -> http.client.HTTPResponse:
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            try:
                connection = self.upstream()
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                response.data = response.read()
                return response
            except (http.client.HTTPException, OSError):
                self.local.connection = None
                if attempt:
                    raise

    def drop(self) -> None:
        """Close the client's connection without an answer."""
        self.close_connection = True

    def handle_one(self) -> None:
        body = self.read_body()
        if self.path.startswith("/proxy-api/"):
            return self.control(body)
        faults = self.faults
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(DYNAMODB_TARGET) if target.startswith(DYNAMODB_TARGET) else ""
        scope = SCOPE.search(self.headers.get("Authorization", ""))
        service = scope.group(1) if scope else ""
        draws = faults.draws(self.command, self.path, body)
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        chosen = not faults.only or operation in faults.only
        fault = faults.fault(draws) if chosen else None
        if fault == "throttle" and service not in ("dynamodb", "dynamodbstreams", "s3"):
            fault = "server_error"
        if fault == "drop_before":
            return self.drop()
        if fault in ("throttle", "server_error"):
            status, headers, data = error_reply(service, fault, bool(target), faults.injected[fault])
            return self.reply(status, headers, data)

        held: dict = {}
        request = None
        if operation and body:
            request = json.loads(body)
            sent, held = hold_back(operation, request, faults, draws) if chosen else (request, {})
            if held:
                request, body = sent, json.dumps(sent).encode()
        response = self.forward(body)
        if fault == "drop_after":
            return self.drop()
        data = response.data
        out_headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        if response.status == 200 and request is not None:
            rewritten = json.loads(data)
            if held:
                field = "UnprocessedKeys" if operation == "BatchGetItem" else "UnprocessedItems"
                rewritten[field] = {**rewritten.get(field, {}), **held}
            if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
                rewritten = realistic(operation, request, rewritten)
                capacity = rewritten.get("ConsumedCapacity")
                units = sum(c["CapacityUnits"] for c in capacity) if isinstance(capacity, list) else \
                    (capacity or {}).get("CapacityUnits", 0.0)
                with self.lock:
                    self.consumed[operation] = self.consumed.get(operation, 0.0) + units
            data = json.dumps(rewritten).encode()
        if "x-amz-crc32" in {k.lower() for k, _ in response.getheaders()}:
            out_headers["x-amz-crc32"] = str(zlib.crc32(data))
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.reply(response.status, out_headers, data, length)

    def reply(self, status: int, headers: dict, data: bytes, length: str | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one


def serve(listen_port: int, target_port: int) -> None:
    Proxy.target_port = target_port
    server = ThreadingHTTPServer(("127.0.0.1", listen_port), Proxy)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
