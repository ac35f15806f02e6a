"""The report intake tests use the fixtures of the webhook tests."""

from tests.webhooks.conftest import (
    clock,
    database_url,
    engine,
    postgresql_schema,
    receiver,
    services,
    settings,
)

__all__ = [
    "clock",
    "database_url",
    "engine",
    "postgresql_schema",
    "receiver",
    "services",
    "settings",
]
