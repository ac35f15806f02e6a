"""Several ``sendarix worker`` processes on one PostgreSQL database.

The limits of a destination site hold across processes, a killed worker's
messages are taken over and arrive (at most one of them twice), and
scheduled messages fire once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from tests.nodes.conftest import WorkerProcess, queue_messages, worker_environment
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import ReceivedMessage, SmtpServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql]


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[Engine]:
    """An engine without workers, to queue messages and read them back."""
    settings = Settings(database_url=pg_url, delivery_mode="sink")
    async with Engine.from_settings(settings, workers=False) as opened:
        yield opened


def wait_for_unique(
    smtp_server: SmtpServer, count: int, timeout: float
) -> list[ReceivedMessage]:
    """Block until ``count`` different Message-IDs arrived; return every message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = smtp_server.messages
        if len({message.message_id for message in received}) >= count:
            return received
        time.sleep(0.1)
    received = smtp_server.messages
    unique = len({message.message_id for message in received})
    raise TimeoutError(f"{unique} of {count} messages arrived within {timeout} s")


def max_in_window(arrivals: list[float], window: float) -> int:
    """Return the most arrivals within any ``window`` seconds."""
    ordered = sorted(arrivals)
    largest = 0
    start = 0
    for end, arrived in enumerate(ordered):
        while arrived - ordered[start] > window:
            start += 1
        largest = max(largest, end - start + 1)
    return largest


async def test_limits_hold_across_workers(
    tmp_path: Path,
    pg_url: str,
    engine: Engine,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    workers: list[WorkerProcess],
) -> None:
    rate = 10
    await engine.control.routes.update(
        "default",
        {"action": {"pacing": {"max_connections": 2, "messages_per_second": rate}}},
    )
    await queue_messages(engine, 80)
    env = worker_environment(pg_url, dns_server, smtp_server)
    workers.extend(WorkerProcess(tmp_path, f"worker{n}", env) for n in range(2))

    received = await anyio.to_thread.run_sync(wait_for_unique, smtp_server, 80, 120)

    assert smtp_server.peak_sessions <= 2
    arrivals = [message.arrived_at for message in received]
    # The bucket admits its burst (one second's worth) plus the rate; half a
    # second of slack covers the time between a grant and the arrival.
    assert max_in_window(arrivals, 1.0) <= rate + rate * 1.5
    assert max_in_window(arrivals, 3.0) <= rate + rate * 3.5
    assert len(received) == 80
    for worker in workers:
        worker.stop()
    delivered = [worker.log().count("action=message_delivered") for worker in workers]
    assert sum(delivered) == 80
    assert min(delivered) > 0


async def test_connection_cap_shared_by_workers(
    tmp_path: Path,
    pg_url: str,
    engine: Engine,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    workers: list[WorkerProcess],
) -> None:
    await engine.control.routes.update(
        "default", {"action": {"pacing": {"max_connections": 3}}}
    )
    await queue_messages(engine, 600)
    env = worker_environment(pg_url, dns_server, smtp_server)
    workers.extend(WorkerProcess(tmp_path, f"worker{n}", env) for n in range(2))

    received = await anyio.to_thread.run_sync(wait_for_unique, smtp_server, 600, 120)

    # Messages beyond a worker's slots wait in it; the sessions never do.
    assert smtp_server.peak_sessions <= 3
    assert len(received) == 600
    for worker in workers:
        worker.stop()
    delivered = [worker.log().count("action=message_delivered") for worker in workers]
    assert sum(delivered) == 600


async def test_killed_worker_taken_over(
    tmp_path: Path,
    pg_url: str,
    engine: Engine,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    workers: list[WorkerProcess],
) -> None:
    total = 5000
    ids = await queue_messages(engine, total)
    env = worker_environment(
        pg_url, dns_server, smtp_server, lease_seconds="4", data_fence="true"
    )
    workers.extend(WorkerProcess(tmp_path, f"worker{n}", env) for n in range(3))
    victim = workers[random.randrange(3)]
    kill_after = random.randrange(total // 10, total * 8 // 10)

    await anyio.to_thread.run_sync(wait_for_unique, smtp_server, kill_after, 120)
    victim.kill()
    received = await anyio.to_thread.run_sync(wait_for_unique, smtp_server, total, 180)

    counts = Counter(message.message_id for message in received)
    duplicates = {message_id: n for message_id, n in counts.items() if n > 1}
    print(
        f"killed a worker after {kill_after} arrivals; {len(counts)} messages "
        f"arrived, {len(duplicates)} of them twice: {sorted(duplicates)}"
    )
    assert len(counts) == total
    assert len(duplicates) <= 1
    assert all(n == 2 for n in duplicates.values())
    view = await engine.control.queue.view()
    assert sum(view.by_status.values()) == 0
    delivered = [await engine.get_message(message_id) for message_id in ids[:50]]
    assert {message.status for message in delivered} == {"delivered"}
    survivors = [worker.log() for worker in workers if worker is not victim]
    assert any("lease_taken_over" in log for log in survivors)


async def test_scheduled_fire_once(
    tmp_path: Path,
    pg_url: str,
    engine: Engine,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    workers: list[WorkerProcess],
) -> None:
    at = engine.clock.now() + timedelta(seconds=3)
    await queue_messages(
        engine, 300, scheduled_time=at.isoformat().replace("+00:00", "Z")
    )
    env = worker_environment(pg_url, dns_server, smtp_server)
    workers.extend(WorkerProcess(tmp_path, f"worker{n}", env) for n in range(3))

    received = await anyio.to_thread.run_sync(wait_for_unique, smtp_server, 300, 120)
    await anyio.sleep(1)

    assert len(smtp_server.messages) == len(received) == 300


async def test_worker_stops_on_sigterm(
    tmp_path: Path,
    pg_url: str,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
) -> None:
    env = worker_environment(pg_url, dns_server, smtp_server)
    worker = WorkerProcess(tmp_path, "worker", env)
    with anyio.fail_after(60):
        while "action=worker_started" not in worker.log():
            await anyio.sleep(0.1)

    worker.stop()

    assert worker.process.returncode == 0
    assert "action=worker_stopped" in worker.log()
