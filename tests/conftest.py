"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

# The recipient domain whose MX record points at the test SMTP server.
DOMAIN = "example.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A DNS server on loopback that routes example.test to 127.0.0.1."""
    with DnsServer() as server:
        server.add_mx(DOMAIN, 10, "mx1.example.test")
        server.add_a("mx1.example.test", "127.0.0.1")
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A recording SMTP server on loopback."""
    with SmtpServer() as server:
        yield server
