"""Fixtures for routing tests: the real ASGI app over an engine on SQLite,
with a loopback DNS server and SMTP server for routing dry runs and
deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_http.app import create_app
from tests.core.factories import T0
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> Settings:
    dns_server.add_mx("hosted.test", 10, "aspmx.l.google.test")
    dns_server.add_mx("hosted.test", 20, "alt1.aspmx.l.google.test")
    dns_server.add_a("aspmx.l.google.test", "127.0.0.1")
    dns_server.add_a("alt1.aspmx.l.google.test", "127.0.0.1")
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'sendarix.db'}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=5,
    )


@pytest.fixture
async def engine(settings: Settings, clock: ManualClock) -> AsyncIterator[Engine]:
    async with Engine.from_settings(settings, clock=clock, workers=False) as opened:
        yield opened


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    secret, _ = await engine.create_api_key("routing tests")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as opened:
        yield opened
