"""Fixtures for webhook, event and report tests: a real database, DNS and SMTP.

The engine runs without background tasks, so a test drives delivery, event
processing and webhook dispatch itself, one step at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_http.app import create_app
from tests.conftest import DOMAIN
from tests.engine.conftest import clock, database_url
from tests.storage.conftest import postgresql_schema
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer
from tests.webhooks.receiver import Receiver

__all__ = ["clock", "database_url", "postgresql_schema"]


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


@asynccontextmanager
async def api_client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """Return a client of the real ASGI app with a key of every scope."""
    secret, _ = await engine.create_api_key("tests")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        yield client
