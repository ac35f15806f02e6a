"""Run a real ``sendarix serve`` process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.dns_server import DnsServer

SENDARIX = [sys.executable, "-m", "sendarix_http.cli"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A ``sendarix serve`` subprocess on a free loopback port.

    ``env`` adds ``SENDARIX_*`` settings; the database, HTTP port and the
    relay (turned off) are set here. Output goes to ``log_path``.

    Without ``SENDARIX_DNS_NAMESERVERS`` in ``env`` the server queries an
    empty loopback DNS server, never the system resolver. Every name it
    looks up is then NXDOMAIN at once, instead of a lookup that leaves the
    machine or one that waits out its timeout.
    """

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._dns: DnsServer | None = None
        if "SENDARIX_DNS_NAMESERVERS" not in env:
            self._dns = DnsServer()
            self._dns.start()
        self.env = {
            **os.environ,
            "SENDARIX_DATABASE_URL": f"sqlite:///{workdir / 'sendarix.db'}",
            "SENDARIX_HTTP_HOST": "127.0.0.1",
            "SENDARIX_HTTP_PORT": str(self.port),
            "SENDARIX_RELAY_PORT": "0",
            **(
                {"SENDARIX_DNS_NAMESERVERS": f"127.0.0.1:{self._dns.port}"}
                if self._dns is not None
                else {}
            ),
            **env,
        }
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_key(self, *args: str) -> str:
        result = subprocess.run(
            [*SENDARIX, "keys", "create", "--name", "e2e", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*SENDARIX, "serve", "--log-level", "DEBUG"],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sendarix serve exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sendarix serve did not answer within 30 s:\n{self.log()}")

    def kill(self) -> None:
        """Stop the process with SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._dns is not None:
            self._dns.stop()
            self._dns = None

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )
