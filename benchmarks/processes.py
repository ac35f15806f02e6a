"""Processes the benchmarks start, all on loopback, and their clean-up.

Every server binds 127.0.0.1 on a free port, writes its output to a log file
in the run's temporary folder, and is stopped (SIGTERM, then SIGKILL) when
its ``with`` block ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

LOOPBACK = "127.0.0.1"
REPOSITORY = Path(__file__).resolve().parent.parent

# Postfix installs its tools in /usr/sbin, which a non-root PATH may lack.
_SBIN_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin"


# Maximum wait for a queue to drain or a sink to fill before a run fails.
DRAIN_TIMEOUT = 300.0


class ServiceError(RuntimeError):
    """A benchmark server exited or did not become ready."""


def check_deadline(started: float, what: str) -> None:
    """Raise ``ServiceError`` once ``DRAIN_TIMEOUT`` has passed since ``started``.

    ``started`` is a ``time.perf_counter()`` value; ``what`` names the wait.
    """
    if time.perf_counter() - started > DRAIN_TIMEOUT:
        raise ServiceError(f"timed out after {DRAIN_TIMEOUT:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def python_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment for a Python child process.

    The repository comes first on ``PYTHONPATH``, so the child imports the
    same source tree as the benchmarks, not another editable install.
    """
    paths = [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(extra or {})}


def wait_for_port(
    port: int, timeout: float = 30.0, check: Callable[[], None] | None = None
) -> bool:
    """Wait until ``port`` on loopback accepts connections; return whether it did.

    ``check`` runs before each attempt and may raise to stop waiting.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def find_tool(name: str) -> str | None:
    """Return the path of a system tool such as ``smtp-sink``, or None."""
    return shutil.which(name, path=_SBIN_PATH)


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size of ``pid`` (Linux ``VmHWM``)."""
    return _status_kilobytes(pid, "VmHWM") * 1024


def rss_bytes(pid: int) -> int:
    return _status_kilobytes(pid, "VmRSS") * 1024


def _status_kilobytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise ServiceError(f"/proc/{pid}/status has no {field} line")


class Service:
    """A subprocess with its output in ``log_path``; a context manager."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError(f"{self.command[0]} is not running")
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(
                f"{' '.join(self.command)} exited with {self.process.returncode}; "
                f"its output:\n{self.log_tail()}"
            )

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        if not wait_for_port(port, timeout, self.check_running):
            raise ServiceError(
                f"{self.command[0]} did not listen on {LOOPBACK}:{port} within "
                f"{timeout:.0f} s; its output:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").replace("\r", "\n")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            # Started but not ready (a timeout, Ctrl-C or SIGTERM while
            # waiting): __exit__ will not run, so stop it here.
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# Enough of the end of smtp-sink's log to hold its last counter record.
_SINK_TAIL_BYTES = 4096


class SmtpSink(Service):
    """Postfix's ``smtp-sink``: accepts every message and drops it.

    ``-c`` makes it print running counters, which ``received`` reads back.
    """

    def __init__(self, workdir: Path, name: str = "smtp-sink") -> None:
        binary = find_tool("smtp-sink")
        if binary is None:
            raise ServiceError("smtp-sink is not installed; install Postfix")
        self.port = free_port()
        command = [binary, "-c"]
        if os.geteuid() == 0:
            # smtp-sink refuses to keep root privileges.
            command += ["-u", "postfix"]
        # The last argument is the listen backlog.
        command += [f"{LOOPBACK}:{self.port}", "1024"]
        super().__init__(command, log_path=workdir / f"{name}.log")

    def start(self) -> None:
        super().start()
        self.wait_for_port(self.port)

    def received(self) -> int:
        """Return how many messages the sink has received (``mesg=N``)."""
        # The counters grow by a record per message, so only the end of the
        # file is read: reading all of it on every poll took CPU from the
        # servers under test, more with every run.
        with self.log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - _SINK_TAIL_BYTES))
            text = log.read().decode(errors="replace")
        for record in reversed(text.replace("\n", "\r").split("\r")):
            for field in record.split():
                if field.startswith("mesg="):
                    return int(field.removeprefix("mesg="))
        return 0


class SendarixProcess(Service):
    """A ``sendarix serve`` or ``sendarix worker`` process.

    ``settings`` are ``SENDARIX_*`` variables; the HTTP port and the relay
    (off) are set here.
    """

    def __init__(
        self,
        workdir: Path,
        settings: Mapping[str, str],
        *,
        command: str = "serve",
        name: str = "sendarix",
    ) -> None:
        self.port = free_port()
        env = python_environment(
            {
                "SENDARIX_HTTP_HOST": LOOPBACK,
                "SENDARIX_HTTP_PORT": str(self.port),
                "SENDARIX_RELAY_PORT": "0",
                **settings,
            }
        )
        self.cli = [sys.executable, "-m", "sendarix_http.cli"]
        super().__init__(
            [*self.cli, command, "--log-level", "WARNING"],
            log_path=workdir / f"{name}.log",
            env=env,
            cwd=workdir,
        )
        self.serves_http = command == "serve"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def create_key(self) -> str:
        """Create an API key with the highest rate limit keys may have,
        1,000,000 requests a minute, which no benchmark here reaches."""
        create = ["keys", "create", "--name", "bench", "--rate-limit", "1000000"]
        result = subprocess.run(
            [*self.cli, *create],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(f"sendarix keys create failed:\n{result.stderr}")
        return result.stdout.strip()

    def start(self) -> None:
        super().start()
        if self.serves_http:
            self.wait_until_healthy()

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise ServiceError(
            f"sendarix serve did not respond within {timeout:.0f} s:\n{self.log_tail()}"
        )
