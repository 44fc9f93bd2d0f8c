"""A local Google Cloud Storage emulator with a fault-injecting proxy in front of it.

The emulator (``gcp-storage-emulator``, pure Python, from the test dependency group) runs
as a subprocess on a free loopback port (:class:`Emulator`). :class:`FaultProxy` forwards
HTTP requests to it and, while a fault plan is armed, answers chosen requests with a 503,
stalls them past the client's timeout, drops the connection after reading the request (a
connection lost mid-upload), or restarts the emulator (``"restart"``: the request in
flight is lost, every request is dropped while the emulator is down, then a new emulator
process serves the objects stored before, when it stores them on disk). Only loopback
addresses are used.

Full-size saves need nothing special: tensorstore (orbax's array writer) uploads each OCDBT
data file in one ``uploadType=media`` request and reads it back with ``Range`` requests, both
of which the emulator serves; a 256 MiB trainer checkpoint (files of up to 46 MB) saved and
restored exactly here in 12 s and 10 s (``test_gcs_trainer_checkpoints.py`` keeps a 64 MiB
one in CI). gcsfs closes some metadata probes before reading the answer; the proxy ignores
the broken pipe instead of printing a traceback.
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


class Emulator:
    """The emulator process on ``port``; ``storage_dir``: keep objects there (they survive a
    `restart`), ``None``: in memory."""

    def __init__(self, bucket: str, storage_dir: str | None = None):
        self.bucket, self.storage_dir = bucket, storage_dir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        argv = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                "--port", str(self.port), "--default-bucket", self.bucket]  # fmt: skip
        env = dict(os.environ)
        if self.storage_dir is None:
            argv.append("--in-memory")
        else:
            env["STORAGE_BASE"] = self.storage_dir
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, down_s: float) -> None:
        """Stops the process, stays down ``down_s`` seconds, starts a new one (same port)."""
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1


@dataclasses.dataclass
class FaultPlan:
    """Which requests to disturb: ``kind`` in {"503", "drop", "stall", "restart"} for the next
    ``count`` requests whose method is in ``methods`` (after skipping ``skip`` of them)."""

    kind: str = "503"
    count: int = 0
    methods: tuple[str, ...] = ("POST", "PUT")
    skip: int = 0
    stall_s: float = 5.0
    down_s: float = 1.0
    injected: int = 0
    seen: int = 0  # requests of ``methods`` while this plan was armed


class FaultProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.upstream_port = emulator.port
        self.plan = FaultPlan()
        self.lock = threading.Lock()
        self.requests = 0
        self.down = threading.Event()  # set while the emulator restarts: drop every request
        self.forwarding = 0  # requests being forwarded now
        self.idle = threading.Condition(self.lock)
        super().__init__(("127.0.0.1", free_port()), _ProxyHandler)

    def restart_emulator(self) -> None:
        """Lets the requests in flight finish, then restarts the emulator; new requests are
        dropped until it is back (a server going away and coming back)."""
        self.down.set()
        try:
            with self.idle:
                self.idle.wait_for(lambda: self.forwarding == 0, timeout=30)
            self.emulator.restart(self.plan.down_s)
        finally:
            self.down.clear()

    def arm(self, **plan) -> FaultPlan:
        with self.lock:
            self.plan = FaultPlan(**plan)
            return self.plan

    def take_fault(self, method: str) -> str | None:
        with self.lock:
            self.requests += 1
            plan = self.plan
            if method not in plan.methods:
                return None
            plan.seen += 1
            if plan.injected >= plan.count:
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

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(self) -> None:
        try:
            self._forward_or_fault()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on this request: not our fault

    def _forward_or_fault(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.take_fault(self.command)
        if fault == "restart":  # this request is lost with the emulator
            threading.Thread(target=self.server.restart_emulator, daemon=True).start()
            self._drop()
            return
        if fault == "drop" or self.server.down.is_set():
            self._drop()
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
        with self.server.lock:
            self.server.forwarding += 1
        try:
            upstream = http.client.HTTPConnection(
                "127.0.0.1", self.server.upstream_port, timeout=60
            )
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):  # the emulator went away meanwhile
            self._drop()
            return
        finally:
            with self.server.idle:
                self.server.forwarding -= 1
                self.server.idle.notify_all()
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
def gcs_emulator(
    bucket: str = "test-bucket", storage_dir: str | None = None
) -> Iterator[FaultProxy]:
    """Start the emulator and the proxy; point google-cloud-storage, gcsfs and
    tensorstore at the proxy through the environment for the duration. ``storage_dir``:
    the emulator keeps its objects there (needed for ``"restart"`` faults to keep them)."""
    emulator = Emulator(bucket, storage_dir)
    proxy = None
    saved = dict(os.environ)
    try:
        emulator.start()
        proxy = FaultProxy(emulator)
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
        emulator.stop()
