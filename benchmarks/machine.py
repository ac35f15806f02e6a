"""The machine and software a benchmark run measured, for the record."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.processes import find_tool

_PACKAGES = (
    "SQLAlchemy",
    "psycopg",
    "uvicorn",
    "httptools",
    "starlette",
    "aiosmtplib",
    "uvloop",
)


def describe_machine() -> list[str]:
    """Return ``key: value`` lines: date, CPU, cores, RAM, load and versions."""
    lines = [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"cpu: {_cpu_model()}",
        f"nproc: {len(os.sched_getaffinity(0))}",
        f"ram: {_memory_total_gib():.1f} GiB",
        f"load average at start (1, 5, 15 min): {load_average()}",
        f"os: {platform.system()} {platform.release()}",
        f"python: {platform.python_version()} ({platform.python_implementation()})",
        f"sqlite: {sqlite3.sqlite_version}",
        f"packages: {', '.join(_package_versions())}",
        f"postfix: {_postfix_version()}",
        f"wrk: {_wrk_version()}",
    ]
    return lines


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _package_versions() -> list[str]:
    versions = []
    for name in (*_PACKAGES, "procrastinate"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return versions


def _postfix_version() -> str:
    postconf = find_tool("postconf")
    if postconf is None:
        return "not installed"
    result = subprocess.run(
        [postconf, "-d", "-h", "mail_version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def _wrk_version() -> str:
    wrk = find_tool("wrk")
    if wrk is None:
        return "not installed"
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip().splitlines()
    return output[0] if output else "unknown"
