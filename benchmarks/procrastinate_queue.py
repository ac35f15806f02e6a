"""The reference queue: procrastinate running no-op jobs on PostgreSQL.

Each run creates a throwaway database on the same server, applies
procrastinate's schema, defers ``count`` jobs in batches, then runs one
worker with ``wait=False`` until the queue is empty. Jobs are kept after
they succeed (procrastinate's default), as Sendarix keeps its messages.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import conninfo as libpq

# The fastest of 1, 10 and 50 on the 2-core machine the results were
# recorded on; the worker fetches one job per free slot.
CONCURRENCY = 50
BATCH = 500


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """Yield the conninfo of a new, empty database; drop it afterwards."""
    base = server_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"sx_bench_procrastinate_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield libpq.make_conninfo(base, dbname=name)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def run_once(server_url: str, count: int) -> tuple[float, float, float]:
    """Return the enqueue, processing and overall rates in jobs per second."""
    import procrastinate

    with temporary_database(server_url) as conninfo:
        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=2, max_size=CONCURRENCY + 2
        )
        app = procrastinate.App(connector=connector)

        @app.task(name="noop")
        async def noop() -> None:
            return None

        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            started = time.perf_counter()
            for start in range(0, count, BATCH):
                size = min(BATCH, count - start)
                await noop.batch_defer_async(*({} for _ in range(size)))
            enqueue_seconds = time.perf_counter() - started

            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=CONCURRENCY,
                wait=False,
                install_signal_handlers=False,
                listen_notify=False,
            )
            process_seconds = time.perf_counter() - started

            done = await _count_succeeded(connector)
        if done != count:
            raise RuntimeError(f"procrastinate finished {done} of {count} jobs")
    return (
        count / enqueue_seconds,
        count / process_seconds,
        count / (enqueue_seconds + process_seconds),
    )


async def _count_succeeded(connector: object) -> int:
    execute = connector.execute_query_one_async  # type: ignore[attr-defined]
    row = await execute(
        "SELECT count(*) AS done FROM procrastinate_jobs WHERE status = 'succeeded'"
    )
    return int(row["done"])
