"""Claim latency as the queue grows: a small queue beside a large one.

Each size gets a fresh database filled by ``fill.fill_queue``. Claims go
through ``SqlStore.claim_due`` with the workers' default batch of 100 and a
five-minute lease, so claimed messages stay leased and each claim takes the
next due ones. A few claims warm the caches before the timed ones.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio

from benchmarks.fill import fill_queue
from benchmarks.options import Options
from benchmarks.queue_throughput import temporary_database
from benchmarks.report import Row, Series, not_available
from sendarix_backends.sql import SqlStore

TARGET = "large queue's median ≤ 2x the small one's"
BATCH = 100
LEASE = timedelta(minutes=5)
WARM_UP_CLAIMS = 5


def run(options: Options) -> list[Row]:
    rows = [_row("SQLite", None, options)]
    if not options.growth_postgresql:
        return rows
    if options.postgresql_url is None:
        reason = options.postgresql_missing_reason
        rows.append(not_available("growth, PostgreSQL", TARGET, reason))
    else:
        rows.append(_row("PostgreSQL", options.postgresql_url, options))
    return rows


def _row(backend: str, server_url: str | None, options: Options) -> Row:
    small, large = options.growth_counts
    small_latencies = _latencies(server_url, small, options)
    large_latencies = _latencies(server_url, large, options)
    measured = Series(f"{large:,} queued", "ms", large_latencies, "claims")
    reference = Series(f"{small:,} queued", "ms", small_latencies, "claims")
    return Row(
        benchmark=f"growth: claim latency, {backend}",
        measured=measured,
        reference=reference,
        target=TARGET,
        met=measured.median <= 2 * reference.median,
        note=f"claim_due of {BATCH} messages, median of the claims",
    )


def _latencies(
    server_url: str | None, count: int, options: Options
) -> tuple[float, ...]:
    with temporary_database(server_url) as url:
        started = time.perf_counter()
        fill_queue(url, count)
        filled = time.perf_counter() - started
        options.progress(f"growth: queued {count:,} in {filled:.1f} s")
        latencies = anyio.run(_claim, url, options.growth_claims)
    return latencies


async def _claim(database_url: str, claims: int) -> tuple[float, ...]:
    latencies = []
    async with SqlStore(database_url, pool_size=2) as store:
        for number in range(WARM_UP_CLAIMS + claims):
            started = time.perf_counter()
            claimed = await store.claim_due("bench", datetime.now(UTC), BATCH, LEASE)
            elapsed = time.perf_counter() - started
            if len(claimed) != BATCH:
                raise RuntimeError(f"claim_due returned {len(claimed)}, not {BATCH}")
            if number >= WARM_UP_CLAIMS:
                latencies.append(elapsed * 1000)
    return tuple(latencies)
