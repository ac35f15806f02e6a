"""Fixtures for webhook, event and report tests: a real database, DNS and SMTP.

The engine runs without background tasks, so a test drives delivery, event
processing and webhook dispatch itself, one step at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.settings import Settings
from sendarix_backends.sql.schema import metadata
from sendarix_core.clock import ManualClock
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.storage.conftest import POSTGRESQL_URL, postgresql_schema, schema_url
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer
from tests.webhooks.receiver import Receiver

__all__ = ["postgresql_schema"]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sendarix.db'}"
    schema: str = request.getfixturevalue("postgresql_schema")
    tables = ", ".join(f"{schema}.{table.name}" for table in metadata.sorted_tables)
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    return schema_url(schema)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(
    database_url: str, dns_server: DnsServer, smtp_server: SmtpServer
) -> Settings:
    return Settings(
        database_url=database_url,
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=5,
        webhook_allow_private=True,
        webhook_timeout=5,
        return_path_domain="bounces.acme.example",
    )


@pytest.fixture
async def engine(settings: Settings, clock: ManualClock) -> AsyncIterator[Engine]:
    async with Engine.from_settings(settings, clock=clock, workers=False) as opened:
        yield opened


@pytest.fixture
def services(engine: Engine) -> EventServices:
    assert engine.events is not None
    return engine.events


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    started = Receiver(tmp_path)
    yield started
    started.stop()


def message_body(
    recipient: str = f"ada@{DOMAIN}", **fields: object
) -> dict[str, object]:
    body: dict[str, object] = {
        "recipient": recipient,
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": "Your code is 847291.",
    }
    body.update(fields)
    return body
