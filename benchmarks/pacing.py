"""Delivery control: the cost of pacing, and throughput with more workers.

    python -m benchmarks.pacing                # about 5 minutes on 2 cores
    python -m benchmarks.pacing --smoke        # tiny counts: proves it works
    python -m benchmarks.pacing --messages 20000 --runs 3
    python -m benchmarks.pacing --only "one site"

Every run queues the messages in a new PostgreSQL schema, spread evenly
over 1,000 recipient domains whose MX hosts all differ, so there are 1,000
destination sites. A loopback DNS server answers for them, pointing them
at 16 Postfix ``smtp-sink`` processes on 127.0.0.1 to 127.0.0.16 (one
``smtp-sink`` serves at most 256 sessions at once, fewer than the idle
sessions three workers keep to 1,000 hosts). ``sendarix worker``
processes (default settings: 200 deliveries in flight each) then deliver
the queue, and the rate counts from the first 2% of arrivals to the last,
so process start-up is left out.

- Pacing overhead: one worker with no pacing limits, against one worker
  whose default rule sets limits that never bind (2 connections and 1,000
  messages a second per site), so every claimed batch takes a grant from
  the database and holds connection slots.
- Workers: one, two and three workers without limits, and three with the
  DATA fence on (``SENDARIX_DATA_FENCE=true``).
- One site: every message to one domain, without limits and with
  ``max_connections: 3``, by one worker and by two sharing the cap.

Results go to standard output as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import psycopg

from benchmarks.machine import describe_machine
from benchmarks.processes import (
    SendarixProcess,
    Service,
    ServiceError,
    find_tool,
    free_port,
)
from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.sql import upgrade
from sendarix_core.ports import Submission
from tests.support.dns_server import DnsServer

POSTGRESQL = "postgresql://postgres@127.0.0.1:5432/test"
SITES = 1000
SINKS = 16
# Limits that every message passes through but that never hold one back.
UNBINDING_LIMITS = {"max_connections": 2, "messages_per_second": 1000}
CAPPED = {"max_connections": 3}
# Arrivals before the clock starts, as a share of the messages.
WARM_UP = 0.02


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    workers: int
    limits: dict[str, int] | None = None
    sites: int = SITES
    data_fence: bool = False


SCENARIOS = (
    Scenario(name="1 worker, no limits", workers=1),
    Scenario(name="1 worker, limits on every site", workers=1, limits=UNBINDING_LIMITS),
    Scenario(name="2 workers, no limits", workers=2),
    Scenario(name="3 workers, no limits", workers=3),
    Scenario(name="3 workers, DATA fence on", workers=3, data_fence=True),
    Scenario(name="1 worker, one site, no limits", workers=1, sites=1),
    Scenario(
        name="1 worker, one site, 3 connections", workers=1, limits=CAPPED, sites=1
    ),
    Scenario(
        name="2 workers, one site, 3 connections", workers=2, limits=CAPPED, sites=1
    ),
)


def domain(number: int) -> str:
    return f"d{number:04d}.bench.test"


def sink_address(number: int) -> str:
    return f"127.0.0.{number + 1}"


def start_dns() -> DnsServer:
    server = DnsServer()
    for number in range(SITES):
        mx_host = f"mx.{domain(number)}"
        server.add_mx(domain(number), 10, mx_host)
        server.add_a(mx_host, sink_address(number % SINKS))
    server.start()
    return server


class Sinks:
    """``smtp-sink`` on 127.0.0.1 to 127.0.0.16, all on one port."""

    def __init__(self, workdir: Path) -> None:
        binary = find_tool("smtp-sink")
        if binary is None:
            raise ServiceError("smtp-sink is not installed; install Postfix")
        self.port = free_port()
        user = ["-u", "postfix"] if os.geteuid() == 0 else []
        tag = secrets.token_hex(3)
        self._services = [
            Service(
                [binary, "-c", *user, f"{sink_address(n)}:{self.port}", "1024"],
                log_path=workdir / f"sink-{tag}-{n}.log",
            )
            for n in range(SINKS)
        ]

    def __enter__(self) -> Sinks:
        for service in self._services:
            service.start()
        for number, service in enumerate(self._services):
            _wait_for_listener(service, sink_address(number), self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for service in self._services:
            service.stop()

    def received(self) -> int:
        """Return how many messages the sinks have received (``mesg=N``)."""
        return sum(_count(service.log_path) for service in self._services)


def _wait_for_listener(service: Service, address: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        service.check_running()
        try:
            socket.create_connection((address, port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise ServiceError(
        f"smtp-sink did not listen on {address}:{port}:\n{service.log_tail()}"
    )


def _count(log_path: Path) -> int:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    for record in reversed(text.replace("\n", "\r").split("\r")):
        for field in record.split():
            if field.startswith("mesg="):
                return int(field.removeprefix("mesg="))
    return 0


@contextmanager
def new_schema() -> Iterator[str]:
    """Create a migrated schema; drop it at the end. Yields its URL."""
    schema = f"bench_pacing_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRESQL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            url = f"{POSTGRESQL}?options=-csearch_path%3D{schema}"
            upgrade(url)
            yield url
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def queue_messages(url: str, count: int, scenario: Scenario) -> None:
    settings = Settings(database_url=url, delivery_mode="sink")
    async with Engine.from_settings(settings, workers=False) as engine:
        if scenario.limits is not None:
            await engine.control.routes.update(
                "default", {"action": {"pacing": scenario.limits}}
            )
        now = engine.clock.now()
        submissions: list[Submission] = []
        for number in range(count):
            body: dict[str, Any] = {
                "recipient": f"user{number}@{domain(number % scenario.sites)}",
                "from": "Acme <no-reply@acme.example>",
                "subject": "Your verification code",
                "text": f"Your code is {number:06d}.",
            }
            submissions.append(
                await engine.prepare_submission(
                    body, api_key=None, idempotency_key=None, now=now
                )
            )
        for start in range(0, count, 1000):
            await engine.store.create_messages(submissions[start : start + 1000], now)


def deliver(scenario: Scenario, count: int, workdir: Path, dns: DnsServer) -> float:
    """Deliver ``count`` queued messages; return messages per second."""
    with new_schema() as url, ExitStack() as stack:
        anyio.run(lambda: queue_messages(url, count, scenario))
        sink = stack.enter_context(Sinks(workdir))
        settings = {
            "SENDARIX_DATABASE_URL": url,
            "SENDARIX_DNS_NAMESERVERS": f"127.0.0.1:{dns.port}",
            "SENDARIX_DESTINATION_PORT": str(sink.port),
            "SENDARIX_HELO_NAME": "bench.sendarix.test",
            "SENDARIX_DATA_FENCE": "true" if scenario.data_fence else "false",
        }
        workers = [
            stack.enter_context(
                SendarixProcess(
                    workdir, settings, command="worker", name=f"worker{number}"
                )
            )
            for number in range(scenario.workers)
        ]
        return _measure(sink, count, workers)


def _measure(sink: Sinks, count: int, workers: list[SendarixProcess]) -> float:
    warm_up = max(1, int(count * WARM_UP))
    deadline = time.monotonic() + 1800
    started_at = None
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check_running()
        received = sink.received()
        if started_at is None and received >= warm_up:
            started_at, started_count = time.monotonic(), received
        if received >= count and started_at is not None:
            return (received - started_count) / (time.monotonic() - started_at)
        time.sleep(0.05)
    raise TimeoutError(f"{sink.received()} of {count} messages arrived in 30 min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="200 messages, 1 run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run the scenarios whose name contains TEXT (repeatable)",
    )
    args = parser.parse_args(argv)
    scenarios = [
        scenario
        for scenario in SCENARIOS
        if not args.only or any(text in scenario.name for text in args.only)
    ]
    if not scenarios:
        parser.error(f"no scenario name contains {' or '.join(args.only)}")
    count = 200 if args.smoke else args.messages
    runs = 1 if args.smoke else args.runs

    machine = describe_machine()
    rows = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        dns = start_dns()
        stack.callback(dns.stop)
        for scenario in scenarios:
            rates = []
            for run in range(runs):
                print(f"{scenario.name}: run {run + 1}", file=sys.stderr, flush=True)
                rates.append(deliver(scenario, count, Path(folder), dns))
            rows.append((scenario.name, statistics.median(rates), rates))

    print(f"{count} messages, median of {runs} run(s)\n")
    print("| scenario | messages/s | runs |")
    print("|---|---:|---|")
    for name, median, rates in rows:
        listed = ", ".join(f"{rate:.0f}" for rate in rates)
        print(f"| {name} | {median:.0f} | {listed} |")
    print()
    print("\n".join(machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
