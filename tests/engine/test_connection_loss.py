"""Background workers outlive dropped PostgreSQL connections.

The server ends the engine's sessions with ``pg_terminate_backend``, as a
failover or a restarted connection pooler would. The engine's connections
carry an ``application_name`` of their own, so no other session is touched.
"""

from __future__ import annotations

import secrets

import anyio
import psycopg
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body
from tests.storage.conftest import POSTGRESQL_URL, schema_url
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql]


def terminate_sessions(application_name: str) -> int:
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_idle_worker_survives_dropped_sessions(
    postgresql_schema: str, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    application_name = f"sx_loss_{secrets.token_hex(4)}"
    settings = Settings(
        database_url=f"{schema_url(postgresql_schema)}&application_name={application_name}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=5,
        poll_interval=0.05,
    )
    async with Engine.from_settings(settings) as engine:
        # The worker polls every 50 ms, so it reads the next due time while
        # its sessions keep being ended.
        terminated = 0
        for _ in range(60):
            terminated += await anyio.to_thread.run_sync(
                terminate_sessions, application_name
            )
            await anyio.sleep(0.02)

        result = await engine.send(message_body())
        with anyio.fail_after(20):
            while True:
                message = await engine.get_message(result.message_id)
                if message.status is MessageStatus.DELIVERED:
                    break
                await anyio.sleep(0.05)

    assert terminated > 0
    assert len(smtp_server.messages) == 1
