"""Fixtures for relay tests: the relay in the test's event loop, over an
engine on SQLite, with a real DNS server and a real SMTP server.

The engine runs without background workers, so a test delivers with
``engine.deliver_due()``. Blocking clients (smtplib) run in a thread while
the relay answers on the loop.
"""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.keys import Environment, Scope
from sendarix_http.relay import Relay
from tests.conftest import DOMAIN
from tests.support.certificates import TestCertificate, make_certificate
from tests.support.dns_server import DnsServer
from tests.support.event_loops import EVENT_LOOPS
from tests.support.server_process import free_port
from tests.support.smtp_server import SmtpServer


@pytest.fixture(params=EVENT_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


SENDER = "ada@acme.example"
RECIPIENT = f"bob@{DOMAIN}"


class FakeMonotonic:
    """A monotonic clock in seconds that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def certificate() -> TestCertificate:
    return make_certificate()


@pytest.fixture
def relay_clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def relay_settings(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'sendarix.db'}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="relay.sendarix.test",
        smtp_timeout=5,
        relay_port=free_port(),
        relay_max_recipients=5,
        relay_max_message_bytes=100_000,
        relay_auth_failure_limit=3,
    )


@pytest.fixture
async def engine(relay_settings: Settings) -> AsyncIterator[Engine]:
    async with Engine.from_settings(relay_settings, workers=False) as opened:
        yield opened


@pytest.fixture
async def relay(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
) -> AsyncIterator[Relay]:
    async with Relay(
        engine,
        relay_settings,
        tls_context=certificate.server_context(),
        clock=relay_clock,
    ) as started:
        yield started


@pytest.fixture
async def api_key(engine: Engine) -> str:
    secret, _ = await engine.create_api_key("relay")
    return secret


async def create_key(
    engine: Engine,
    *,
    scopes: frozenset[Scope] | None = None,
    sender_domains: tuple[str, ...] = (),
    environment: Environment = Environment.LIVE,
) -> str:
    secret, _ = await engine.create_api_key(
        "relay",
        scopes=scopes,
        sender_domains=sender_domains,
        environment=environment,
    )
    return secret


def message_bytes(
    *,
    sender: str = f"Ada <{SENDER}>",
    recipient: str = RECIPIENT,
    subject: str = "Your verification code",
    headers: str = "",
    body: str = "Your code is 847291.\r\n",
) -> bytes:
    """Return a small RFC 5322 message with CRLF line ends."""
    text = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"{headers}\r\n{body}"
    )
    return text.encode()


def connect(
    settings: Settings, certificate: TestCertificate, secret: str | None = None
) -> smtplib.SMTP:
    """Open a session with STARTTLS, and AUTH with ``secret`` when given."""
    client = smtplib.SMTP("127.0.0.1", settings.relay_port, timeout=10)
    client.starttls(context=certificate.client_context())
    client.ehlo()
    if secret is not None:
        # One mechanism only: login() would try the next one after a 535.
        client.user, client.password = "legacy-app", secret
        client.auth("PLAIN", client.auth_plain)
    return client


async def submit(
    settings: Settings, certificate: TestCertificate, secret: str, data: bytes
) -> tuple[int, bytes]:
    """Send ``data`` from SENDER to RECIPIENT in one session, from a thread.

    Returns the reply to DATA.
    """

    def run() -> tuple[int, bytes]:
        with connect(settings, certificate, secret) as client:
            client.mail(SENDER)
            client.rcpt(RECIPIENT)
            return client.data(data)

    return await anyio.to_thread.run_sync(run)
