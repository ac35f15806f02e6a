"""Fixtures for many-node tests: ``sendarix worker`` processes sharing one
PostgreSQL schema, delivering to a DNS server and an SMTP server on loopback.

Each test gets its own schema, brought up to date by ``sendarix migrate``
as an operator would, and dropped at the end. Without a server on
127.0.0.1:5432 the tests are skipped, unless ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.ports import Submission
from tests.conftest import DOMAIN
from tests.engine.conftest import message_body
from tests.storage.conftest import POSTGRESQL_URL, schema_url
from tests.support.dns_server import DnsServer
from tests.support.server_process import SENDARIX
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A new, migrated PostgreSQL schema for one test."""
    try:
        admin = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {POSTGRESQL_URL} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    schema = f"sx_nodes_{secrets.token_hex(5)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            url = schema_url(schema)
            subprocess.run(
                [*SENDARIX, "migrate", "--database-url", url],
                check=True,
                capture_output=True,
                timeout=120,
                cwd=tmp_path,
            )
            yield url
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def worker_environment(
    url: str, dns_server: DnsServer, smtp_server: SmtpServer, **settings: str
) -> dict[str, str]:
    """Return the environment of a worker that delivers to the test servers."""
    env = {
        **os.environ,
        "SENDARIX_DATABASE_URL": url,
        "SENDARIX_DNS_NAMESERVERS": f"127.0.0.1:{dns_server.port}",
        "SENDARIX_DESTINATION_PORT": str(smtp_server.port),
        "SENDARIX_HELO_NAME": "sendarix.test",
        "SENDARIX_POLL_INTERVAL": "0.2",
    }
    env.update({f"SENDARIX_{name.upper()}": value for name, value in settings.items()})
    return env


class WorkerProcess:
    """A ``sendarix worker`` subprocess; its output goes to ``log_path``."""

    def __init__(self, workdir: Path, name: str, env: Mapping[str, str]) -> None:
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*SENDARIX, "worker", "--log-level", "INFO"],
            env=dict(env),
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """Stop with SIGKILL: no shutdown code runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers append themselves here; all are stopped at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


async def queue_messages(
    engine: Engine, count: int, *, domain: str = DOMAIN, **fields: object
) -> list[str]:
    """Store ``count`` messages in batches of 1,000; return their ids."""
    now = engine.clock.now()
    submissions: list[Submission] = []
    for number in range(count):
        body = message_body(f"user{number}@{domain}", **fields)
        submissions.append(
            await engine.prepare_submission(
                body, api_key=None, idempotency_key=None, now=now
            )
        )
    for start in range(0, count, 1000):
        await engine.store.create_messages(submissions[start : start + 1000], now)
    return [submission.transition.after.id for submission in submissions]
