"""An HTTP proxy in front of moto's server that makes DynamoDB report the capacity AWS would charge.

moto answers every request with a constant ConsumedCapacity (1.0 for a BatchWriteItem of any size),
so a rate limiter cannot be tested against it. Through this proxy, a request that asks for
ReturnConsumedCapacity gets AWS's units instead: writes one per started KB of each item written,
reads one per started 4 KB (half for eventually consistent reads; a Scan or Query counts the bytes of
the items it returns). Everything else passes through unchanged. It also counts, per operation, the
units it reported, so a test can check what a run consumed.

    python tests/aws_proxy.py LISTEN_PORT TARGET_PORT
    GET /proxy-api/consumed   -> {"PutItem": units, "Scan": units, ...}
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET_PREFIX = "DynamoDB_20120810."
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "x-amz-crc32"}


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


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target_port = 0
    consumed: dict[str, float] = {}
    lock = threading.Lock()
    local = threading.local()

    def log_message(self, *args):  # quiet
        pass

    def upstream(self) -> http.client.HTTPConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        return self.local.connection

    def handle_one(self) -> None:
        if self.path == "/proxy-api/consumed":
            return self.reply(200, {"Content-Type": "application/json"}, json.dumps(self.consumed).encode())
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        for attempt in range(2):
            try:
                connection = self.upstream()
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.local.connection = None
                if attempt:
                    raise
        operation = self.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
        out_headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        if response.status == 200 and operation and body:
            request = json.loads(body)
            if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
                rewritten = realistic(operation, request, json.loads(data))
                capacity = rewritten.get("ConsumedCapacity")
                units = sum(c["CapacityUnits"] for c in capacity) if isinstance(capacity, list) else \
                    (capacity or {}).get("CapacityUnits", 0.0)
                with self.lock:
                    self.consumed[operation] = self.consumed.get(operation, 0.0) + units
                data = json.dumps(rewritten).encode()
        if "x-amz-crc32" in {k.lower() for k, _ in response.getheaders()}:
            out_headers["x-amz-crc32"] = str(zlib.crc32(data))
        self.reply(response.status, out_headers, data)

    def reply(self, status: int, headers: dict, data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
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
