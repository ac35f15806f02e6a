"""Queue throughput: enqueue, claim and complete, beside procrastinate.

The Sendarix side is ``queue_throughput.run_once``: the store's batch calls
with a 250 reply in place of a transport. Rates are messages per second over
enqueue and processing together.
"""

from __future__ import annotations

import argparse

import anyio

from benchmarks import procrastinate_queue, queue_throughput
from benchmarks.options import Options
from benchmarks.report import Row, Series, not_available

TARGET = "≥ 10,000 messages/s; ≥ 10x procrastinate"
TARGET_RATE = 10_000
TARGET_RATIO = 10


def run(options: Options) -> list[Row]:
    reference = _procrastinate(options)
    rows = [_row("SQLite", None, options, reference)]
    if options.postgresql_url is None:
        rows.append(
            not_available(
                "queue, PostgreSQL", TARGET, options.postgresql_missing_reason
            )
        )
    else:
        rows.append(_row("PostgreSQL", options.postgresql_url, options, reference))
        # Several workers claim from one PostgreSQL database, each query
        # running on the server while the others' Python runs on the client.
        rows.append(
            _row(
                "PostgreSQL, 2 claim loops",
                options.postgresql_url,
                options,
                reference,
                workers=2,
            )
        )
    return rows


def _row(
    backend: str,
    database_url: str | None,
    options: Options,
    reference: Series | None,
    *,
    workers: int = 1,
) -> Row:
    arguments = argparse.Namespace(
        count=options.queue_count,
        batch=500,
        workers=workers,
        separate_accept=False,
        database_url=database_url,
    )
    overall = []
    for _ in range(options.runs):
        _, _, rate = anyio.run(queue_throughput.run_once, arguments)
        overall.append(rate)
        options.progress(f"queue {backend}: {rate:,.0f} messages/s")
    measured = Series(f"Sendarix {backend}", "messages/s", tuple(overall))
    met = measured.median >= TARGET_RATE
    if reference is not None:
        met = met and measured.median >= TARGET_RATIO * reference.median
    note = f"{options.queue_count:,} messages per run"
    if reference is None:
        note += "; procrastinate not run: " + options.procrastinate_unavailable
    return Row(
        benchmark=f"queue, {backend}",
        measured=measured,
        reference=reference,
        target=TARGET,
        met=met,
        note=note,
    )


def _procrastinate(options: Options) -> Series | None:
    if options.postgresql_url is None or options.procrastinate_unavailable:
        return None
    rates = []
    for _ in range(options.runs):
        _, _, rate = anyio.run(
            procrastinate_queue.run_once,
            options.postgresql_url,
            options.procrastinate_count,
        )
        rates.append(rate)
        options.progress(f"queue procrastinate: {rate:,.0f} jobs/s")
    label = f"procrastinate, {options.procrastinate_count:,} jobs"
    return Series(label, "jobs/s", tuple(rates))
