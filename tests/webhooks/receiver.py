"""A webhook receiver on loopback, run as its own process.

``python -m tests.webhooks.receiver PORT LOG [--delay SECONDS] [--status CODE]``
answers every POST with ``CODE`` after ``SECONDS`` and appends one JSON line
per request (headers, base64 body) to ``LOG`` before answering, so a test
sees every request that reached it, even one whose sender was killed
while waiting for the answer. A request whose body was cut off is not
recorded.
``Receiver`` starts and stops that process from a test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support.server_process import free_port


class Receiver:
    """Starts ``python -m tests.webhooks.receiver`` and reads its log."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = workdir / f"receiver-{self.port}.jsonl"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self, *, delay: float = 0.0, status: int = 200) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.webhooks.receiver",
            str(self.port),
            str(self.log_path),
            "--delay",
            str(delay),
            "--status",
            str(status),
        ]
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(command, cwd=root)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the receiver on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def requests(self) -> list[dict[str, Any]]:
        """Return the recorded requests: ``headers`` (lower-case) and ``body``."""
        if not self.log_path.exists():
            return []
        recorded = []
        for line in self.log_path.read_text().splitlines():
            entry = json.loads(line)
            entry["body"] = base64.b64decode(entry["body"])
            recorded.append(entry)
        return recorded

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            recorded = self.requests()
            if len(recorded) >= count or time.monotonic() > deadline:
                return recorded
            time.sleep(0.05)


def _serve(port: int, log_path: str, delay: float, status: int) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                # The sender closed the connection before the whole body
                # arrived, as a killed server does: nothing was delivered.
                return
            entry = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(),
            }
            with lock, open(log_path, "a") as log:
                log.write(json.dumps(entry) + "\n")
                log.flush()
                os.fsync(log.fileno())
            time.sleep(delay)
            reply = b'{"received": true}'
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    options = dict(zip(arguments[2::2], arguments[3::2], strict=True))
    _serve(
        int(arguments[0]),
        arguments[1],
        float(options.get("--delay", "0")),
        int(options.get("--status", "200")),
    )
