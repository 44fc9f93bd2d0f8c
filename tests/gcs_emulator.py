"""A local Google Cloud Storage emulator with a fault-injecting proxy in front of it.

The emulator (``gcp-storage-emulator``, pure Python, from the test dependency group) runs
as a subprocess on a free loopback port. :class:`FaultProxy` forwards HTTP requests to it
and, while a fault plan is armed, answers chosen requests with a 503, stalls them past the
client's timeout, or drops the connection after reading the request (a connection lost
mid-upload). Only loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"GCS emulator did not open port {port} within {timeout_s} s")


@dataclasses.dataclass
class FaultPlan:
    """Which requests to disturb: ``kind`` in {"503", "drop", "stall"} for the next
    ``count`` requests whose method is in ``methods`` (after skipping ``skip`` of them)."""

    kind: str = "503"
    count: int = 0
    methods: tuple[str, ...] = ("POST", "PUT")
    skip: int = 0
    stall_s: float = 5.0
    injected: int = 0


class FaultProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.plan = FaultPlan()
        self.lock = threading.Lock()
        self.requests = 0
        super().__init__(("127.0.0.1", free_port()), _ProxyHandler)

    def arm(self, **plan) -> FaultPlan:
        with self.lock:
            self.plan = FaultPlan(**plan)
            return self.plan

    def take_fault(self, method: str) -> str | None:
        with self.lock:
            self.requests += 1
            plan = self.plan
            if method not in plan.methods or plan.injected >= plan.count:
                return None
            if plan.skip > 0:
                plan.skip -= 1
                return None
            plan.injected += 1
            return plan.kind


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.take_fault(self.command)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "stall":
            time.sleep(self.server.plan.stall_s)
        if fault == "503":
            payload = b'{"error": {"code": 503, "message": "injected"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


@contextlib.contextmanager
def gcs_emulator(bucket: str = "test-bucket") -> Iterator[FaultProxy]:
    """Start the emulator and the proxy; point google-cloud-storage, gcsfs and
    tensorstore at the proxy through the environment for the duration."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", bucket],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proxy = None
    saved = dict(os.environ)
    try:
        _wait_for_port(port)
        proxy = FaultProxy(port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        os.environ.update(
            STORAGE_EMULATOR_HOST=url,
            TENSORSTORE_GCS_HTTP_URL=url,
            GOOGLE_AUTH_TOKEN_FOR_TESTING="dummy",
            EPATH_USE_TF="false",
        )
        yield proxy
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if proxy is not None:
            proxy.shutdown()
            proxy.server_close()
        process.terminate()
        process.wait(timeout=10)
