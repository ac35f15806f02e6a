"""Counts, durations and the environment one benchmark run uses."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import attrs


@attrs.frozen(kw_only=True)
class Options:
    """What ``benchmarks/run`` measures, and with how much load.

    ``postgresql_url`` is None when no PostgreSQL server accepted a
    connection. The ``*_missing_reason`` strings say why a reference cannot
    run, and are empty when it can.
    """

    workdir: Path
    runs: int
    smoke: bool
    postgresql_url: str | None
    postgresql_missing_reason: str = ""
    procrastinate_missing_reason: str = ""
    queue_count: int
    procrastinate_count: int
    http_seconds: float
    http_connections: int
    delivery_count: int
    dkim_count: int
    smtp_connections: int
    e2e_seconds: float
    postfix_count: int
    relay_sessions: int
    relay_messages: int
    growth_counts: tuple[int, int]
    growth_claims: int
    growth_postgresql: bool
    memory_count: int
    memory_seconds: float
    worker_concurrency: int | None = None
    """``SENDARIX_WORKER_CONCURRENCY`` of delivering processes; None keeps
    the setting's default."""
    started: float = attrs.field(factory=time.monotonic)
    loads: list[float] = attrs.field(factory=list)
    """The 1-minute load average at each progress line, to judge the noise."""

    @property
    def procrastinate_unavailable(self) -> str:
        """Why procrastinate cannot run, or an empty string when it can."""
        return self.postgresql_missing_reason or self.procrastinate_missing_reason

    def worker_settings(self) -> dict[str, str]:
        """Settings that delivering Sendarix processes get on top of their own."""
        if self.worker_concurrency is None:
            return {}
        return {"SENDARIX_WORKER_CONCURRENCY": str(self.worker_concurrency)}

    def progress(self, text: str) -> None:
        """Print a progress line on standard error, with the elapsed time."""
        elapsed = time.monotonic() - self.started
        self.loads.append(os.getloadavg()[0])
        print(f"[{elapsed:6.1f} s] {text}", file=sys.stderr, flush=True)
