"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

# Hypothesis times each example against a wall clock by default. On a
# loaded CI machine that measures the machine, not the code under test, so
# property tests have no deadline and no too_slow health check here.
settings.register_profile(
    "sendarix", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("sendarix")

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
