"""Fixtures for pacing and queue control: the engine over a real database
(SQLite and PostgreSQL), DNS server and SMTP server, with a manual clock.

Two destination sites share the test SMTP server: example.test (MX
mx1.example.test) and other.test (MX mx.other.test).
"""

from __future__ import annotations

import pytest

from tests.engine.conftest import (
    clock,
    database_url,
    engine,
    postgresql_schema,
    settings,
)
from tests.support.dns_server import DnsServer

__all__ = ["clock", "database_url", "engine", "postgresql_schema", "settings"]

OTHER = "other.test"
EXAMPLE_SITE = "mx1.example.test"
OTHER_SITE = "mx.other.test"


@pytest.fixture(autouse=True)
def _other_site(dns_server: DnsServer) -> None:
    dns_server.add_mx(OTHER, 10, OTHER_SITE)
    dns_server.add_a(OTHER_SITE, "127.0.0.1")
