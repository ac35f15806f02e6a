"""Fixtures for the SMTP transport tests: a DNS server and SMTP servers on
loopback, and resolvers and transports pointed at them."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest

from sendarix_backends.smtp import MxResolver, MxTransport, TlsMode
from sendarix_core.ports import Envelope
from tests.support.certificates import TestCertificate, make_certificate
from tests.support.dns_server import DnsServer
from tests.support.event_loops import EVENT_LOOPS
from tests.support.smtp_server import SmtpServer


@pytest.fixture(params=EVENT_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


DOMAIN = "example.test"


class FakeClock:
    """Monotonic seconds that move only when a test sets ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """The SMTP server, once offering PIPELINING and once not, so each
    test covers both ways the transaction is sent."""
    with SmtpServer(pipelining=request.param) as server:
        yield server


@pytest.fixture(scope="session")
def certificate() -> TestCertificate:
    return make_certificate(names=("localhost", "mx1.example.test"))


@pytest.fixture
def resolver(dns_server: DnsServer) -> MxResolver:
    return MxResolver(
        [("127.0.0.1", dns_server.port)], timeout=2.0, rng=random.Random(7)
    )


@pytest.fixture
def routed_server(dns_server: DnsServer, smtp_server: SmtpServer) -> SmtpServer:
    """The SMTP server, published as the only MX host of example.test."""
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    return smtp_server


@pytest.fixture
async def transport(
    resolver: MxResolver, smtp_server: SmtpServer
) -> AsyncIterator[MxTransport]:
    transport = MxTransport(
        resolver,
        port=smtp_server.port,
        helo_name="sender.example.test",
        timeout=5.0,
        tls=TlsMode.OPPORTUNISTIC,
    )
    yield transport
    await transport.aclose()


def make_envelope(
    rcpt_to: str = f"ada@{DOMAIN}", *, number: int = 1, smtputf8: bool = False
) -> Envelope:
    message_id = f"<msg-{number}@sender.example.test>"
    data = (
        f"Message-ID: {message_id}\r\n"
        "From: sender@sender.example.test\r\n"
        f"To: {rcpt_to}\r\n"
        "Subject: Test\r\n"
        "\r\n"
        "Hello.\r\n"
    ).encode()
    return Envelope(
        message_id=f"msg-{number}",
        mail_from="bounces@sender.example.test",
        rcpt_to=rcpt_to,
        data=data,
        smtputf8=smtputf8,
    )
