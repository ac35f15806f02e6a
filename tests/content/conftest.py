"""Fixtures for content tests: an engine over a real database, DNS and SMTP.

The engine runs without background workers and with a manual clock; the
HTTP client talks to the real ASGI app around it. ``acme.example`` is the
sending domain the tests add, publish and verify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import dns.nameserver
import dns.resolver
import httpx
import pytest

from sendarix_backends.domains import DnsRecord, SendingDomain
from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_http.app import create_app
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.engine.conftest import database_url, postgresql_schema
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

__all__ = ["database_url", "postgresql_schema"]

SENDER_DOMAIN = "acme.example"
PUBLIC_URL = "https://mail.sendarix.test"


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
        public_url=PUBLIC_URL,
        smtp_timeout=5,
    )


@pytest.fixture
async def engine(settings: Settings, clock: ManualClock) -> AsyncIterator[Engine]:
    async with Engine.from_settings(settings, clock=clock, workers=False) as opened:
        yield opened


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    secret, _ = await engine.create_api_key("content tests")
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url=PUBLIC_URL,
        headers={"Authorization": f"Bearer {secret}"},
    ) as opened:
        yield opened


def message_body(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "recipient": f"ada@{DOMAIN}",
        "from": f"Acme <no-reply@{SENDER_DOMAIN}>",
        "subject": "Your verification code",
        "text": "Your code is 847291.",
    }
    body.update(fields)
    return body


def publish(dns_server: DnsServer, records: Sequence[DnsRecord]) -> None:
    """Serve ``records`` from the test DNS server."""
    for record in records:
        if record.type == "TXT":
            dns_server.add_txt(record.name, record.value)
        elif record.type == "MX":
            preference, host = record.value.split()
            dns_server.add_mx(record.name, int(preference), host)
        elif record.type == "CNAME":
            dns_server.add_cname(record.name, record.value)
        else:
            raise AssertionError(f"the test DNS server can't serve {record.type}")


async def verified_domain(
    engine: Engine, dns_server: DnsServer, *, ed25519: bool = False
) -> SendingDomain:
    """Add ``acme.example``, publish its records and verify it."""
    domains = engine.content.domains
    domain = await domains.add({"domain": SENDER_DOMAIN, "ed25519": ed25519})
    publish(dns_server, domains.records(domain))
    verified = await domains.verify(SENDER_DOMAIN)
    assert verified.missing == ()
    return verified


def dns_txt_lookup(dns_server: DnsServer) -> Callable[..., bytes | None]:
    """Return a dkimpy ``dnsfunc`` that asks the test DNS server for TXT records."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", dns_server.port)]

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii").rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return lookup
