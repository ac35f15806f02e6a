"""A NUL character in a path or query value is a 422, on both databases.

PostgreSQL rejects U+0000 in text, so the value must be rejected before
any lookup, or the lookup fails as a database error (503).
"""

from __future__ import annotations

import base64
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


MESSAGE = {
    "recipient": "user@example.com",
    "from": "Acme <no-reply@acme.example>",
    "subject": "Your code",
    "text": "Your code is 847291.",
}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/messages", {**MESSAGE, "metadata": {"k": "a\0b"}}, "metadata.k"),
        ("/v1/messages", {**MESSAGE, "metadata": {"k\0": "a"}}, "metadata.k\0"),
        (
            "/v1/messages",
            {**MESSAGE, "headers": {"X-Campaign": "a\0"}},
            "headers.X-Campaign",
        ),
        (
            "/v1/messages",
            {
                "recipient": "user@example.com",
                "from": "no-reply@acme.example",
                "template": "otp",
                "template_data": {"a": "1", "b": "\0"},
            },
            "template_data.b",
        ),
        (
            "/v1/messages",
            {
                "recipient": "user@example.com",
                "from": "no-reply@acme.example",
                "template": "otp",
                "template_data": {"a": [{"deep": "x\0"}]},
            },
            "template_data.a.0.deep",
        ),
        (
            "/v1/templates",
            {"name": "tz", "text": "{{ a }}", "html": "<p>\0</p>"},
            "html",
        ),
        ("/v1/templates", {"name": "tz", "text": "a\0"}, "text"),
        ("/v1/templates", {"name": "tz", "subject": "a\0", "text": "a"}, "subject"),
        (
            "/v1/routes",
            {
                "description": "a\0b",
                "match": {"tags": ["x"]},
                "action": {"transport": "sink"},
            },
            "description",
        ),
        ("/v1/queue/pause", {"site": "a\0"}, "site"),
        (
            "/v1/queue/retry",
            {"filter": {"recipient_domain": ["a\0.test"]}},
            "filter.recipient_domain.0",
        ),
        (
            "/v1/webhooks",
            {"url": "https://hooks.example.com/x", "description": "a\0"},
            "description",
        ),
        ("/v1/domains", {"domain": "acme\0.example"}, "domain"),
        ("/v1/api-keys", {"name": "ci\0"}, "name"),
        ("/v1/suppressions", {"recipient": "a\0@example.com"}, "recipient"),
        ("/v1/unsubscribes", {"recipient": "a\0@example.com"}, "recipient"),
    ],
)
async def test_nul_in_body_rejected(
    any_client: httpx.AsyncClient, path: str, body: dict[str, object], field: str
) -> None:
    await any_client.post(
        "/v1/templates", json={"name": "otp", "text": "Code {{ a }}", "subject": "s"}
    )
    await any_client.post("/v1/templates/otp/publish")

    response = await any_client.post(path, json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == field
    assert error["code"] == "invalid_character"
    assert "U+0000" in error["message"]


async def test_nul_in_permissive_batch_item(any_client: httpx.AsyncClient) -> None:
    body = {
        "mode": "permissive",
        "messages": [MESSAGE, {**MESSAGE, "metadata": {"k": "a\0b"}}],
    }

    response = await any_client.post("/v1/messages/batch", json=body)

    assert response.status_code == 202
    queued, skipped = response.json()["data"]
    assert queued["status"] == "queued"
    [error] = skipped["errors"]
    assert error["field"] == "messages.1.metadata.k"
    assert error["code"] == "invalid_character"


async def test_nul_in_strict_batch_item(any_client: httpx.AsyncClient) -> None:
    body = {"messages": [MESSAGE, {**MESSAGE, "subject": "a\0"}]}

    response = await any_client.post("/v1/messages/batch", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "messages.1.subject"
    assert error["code"] == "invalid_character"


def edited_cursor(position: bytes) -> str:
    return base64.urlsafe_b64encode(position).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/v1/suppressions", b"123:a\0b"),
        ("/v1/unsubscribes", b"123:a\0b"),
        ("/v1/messages", b"msg_\0"),
        ("/v1/events", b"created:1\0"),
        ("/v1/templates", b"a\0"),
    ],
)
async def test_nul_in_cursor_rejected(
    any_client: httpx.AsyncClient, path: str, position: bytes
) -> None:
    response = await any_client.get(path, params={"cursor": edited_cursor(position)})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "cursor"
    assert error["code"] == "invalid_cursor"
