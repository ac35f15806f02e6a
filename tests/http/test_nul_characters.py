"""A NUL character in a path or query value is a 422, on both databases.

PostgreSQL rejects U+0000 in text, so the value must be rejected before
any lookup, or the lookup fails as a database error (503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from tests.engine.conftest import database_url
from tests.storage.conftest import postgresql_schema
from tests.webhooks.conftest import api_client

__all__ = ["database_url", "postgresql_schema"]

pytestmark = pytest.mark.anyio


@pytest.fixture
async def any_client(
    database_url: str, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, delivery_mode="sink")
    engine = Engine.from_settings(settings, clock=clock, workers=False)
    async with engine, api_client(engine) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/messages/%00", "message_id"),
        ("DELETE", "/v1/messages/msg_%00", "message_id"),
        ("GET", "/v1/messages/%00/events", "message_id"),
        ("GET", "/v1/suppressions/a%00@b.test", "recipient"),
        ("DELETE", "/v1/suppressions/a%00@b.test", "recipient"),
        ("GET", "/v1/api-keys/%00", "key_id"),
        ("GET", "/v1/templates/%00", "name"),
        ("GET", "/v1/messages?recipient=a%00@b.test", "recipient"),
        ("GET", "/v1/events?message_id=%00", "message_id"),
        ("GET", "/v1/events?metadata[a%00]=1", "metadata[a\x00]"),
    ],
)
async def test_nul_value_rejected(
    any_client: httpx.AsyncClient, method: str, path: str, field: str
) -> None:
    response = await any_client.request(method, path)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == field
    assert error["code"] == "invalid_character"
    assert "U+0000" in error["message"]
