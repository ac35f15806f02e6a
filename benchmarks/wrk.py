"""Run ``wrk`` with ``post.lua`` against a loopback URL and read its results."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import attrs
import orjson

from benchmarks.processes import find_tool

SCRIPT = Path(__file__).with_name("post.lua")


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@attrs.frozen
class WrkResult:
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Requests per second that got a response without an error status."""
        return (self.requests - self.status_errors) / self.seconds


def wrk_missing_reason() -> str:
    return "" if find_tool("wrk") else "wrk is not installed (Debian package wrk)"


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    body_file: Path,
    api_key: str = "",
) -> WrkResult:
    """POST the body for ``seconds`` over ``connections`` connections.

    One wrk thread is enough to keep 64 connections busy against a Python
    server, and leaves the second core to the server.
    """
    wrk = find_tool("wrk")
    if wrk is None:
        raise WrkError(wrk_missing_reason())
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_API_KEY": api_key}
    command = [
        wrk,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--script",
        str(SCRIPT),
        url,
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False
    )
    line = next(
        (text for text in result.stdout.splitlines() if text.startswith("{")), None
    )
    if result.returncode != 0 or line is None:
        raise WrkError(
            f"wrk exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    data = orjson.loads(line)
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        status_errors=data["status_errors"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
