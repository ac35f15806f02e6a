"""Memory: peak RSS of ``sendarix serve`` with a very large queue (SQLite).

The queue is filled once by ``fill.fill_queue`` and copied for each run.
The server delivers to ``smtp-sink`` in smarthost mode (or, without Postfix's
tools, in sink mode) for a fixed time, claiming batch after batch. The
figure is the process's peak resident set size (``VmHWM``) at the end.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.fill import count_messages, fill_queue
from benchmarks.options import Options
from benchmarks.processes import (
    LOOPBACK,
    SendarixProcess,
    SmtpSink,
    find_tool,
    peak_rss_bytes,
)
from benchmarks.report import Row, Series

TARGET = "≤ 300 MB"
MEGABYTE = 1024 * 1024


def run(options: Options) -> list[Row]:
    count = options.memory_count
    template = options.workdir / "memory-template.db"
    started = time.perf_counter()
    fill_queue(f"sqlite:///{template}", count)
    options.progress(
        f"memory: queued {count:,} in {time.perf_counter() - started:.1f} s"
    )

    peaks, delivered = [], []
    for number in range(options.runs):
        peak, done = _measure(options, template, number)
        options.progress(f"memory: peak RSS {peak:.0f} MB, {done:,} delivered")
        peaks.append(peak)
        delivered.append(done)
    template.unlink()

    mode = "smarthost to smtp-sink" if find_tool("smtp-sink") else "sink mode"
    return [
        Row(
            benchmark=f"memory: peak RSS of sendarix serve, {count:,} queued (SQLite)",
            measured=Series("peak RSS", "MB", tuple(peaks)),
            target=TARGET,
            met=max(peaks) <= 300,
            note=f"{mode}, {options.memory_seconds:.0f} s of delivery per run, "
            f"{min(delivered):,} to {max(delivered):,} messages delivered",
        )
    ]


def _measure(options: Options, template: Path, number: int) -> tuple[float, int]:
    workdir = options.workdir / f"memory-{number}"
    workdir.mkdir()
    database = workdir / "sendarix.db"
    shutil.copyfile(template, database)
    database_url = f"sqlite:///{database}"
    settings = {"SENDARIX_DATABASE_URL": database_url, "SENDARIX_DELIVERY_MODE": "sink"}

    with ExitStack() as stack:
        if find_tool("smtp-sink"):
            sink = stack.enter_context(SmtpSink(workdir))
            settings |= {
                "SENDARIX_DELIVERY_MODE": "smarthost",
                "SENDARIX_SMARTHOST": f"smtp://{LOOPBACK}:{sink.port}",
                "SENDARIX_HELO_NAME": "bench.localhost",
            }
        server = stack.enter_context(SendarixProcess(workdir, settings))
        time.sleep(options.memory_seconds)
        server.check_running()
        peak = peak_rss_bytes(server.pid) / MEGABYTE
    delivered = options.memory_count - count_messages(database_url, unfinished=True)
    database.unlink()
    return peak, delivered
