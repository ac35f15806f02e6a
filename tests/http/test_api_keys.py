"""``/v1/api-keys``, scopes, expiry, sender domains and test keys via the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Environment, Scope
from sendarix_http.app import create_app
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.http.conftest import key_with_scopes, message_body
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def create_key(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"name": "ci", "scopes": ["messages:send"]}
    body.update(fields)
    response = await client.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_create_shows_key_once(client: httpx.AsyncClient) -> None:
    created = await create_key(client, environment="test", rate_limit=600)

    secret = str(created["key"])
    assert secret.startswith("sk_test_")
    assert created["prefix"] == secret[:12]
    assert created["environment"] == "test"
    assert created["rate_limit"] == 600
    assert created["scopes"] == ["messages:send"]
    assert created["last_used_at"] is None
    assert "key_hash" not in created

    read = (await client.get(f"/v1/api-keys/{created['id']}")).json()
    listed = (await client.get("/v1/api-keys")).text
    assert "key" not in read
    assert read["id"] == created["id"]
    assert secret not in listed
    assert "key_hash" not in listed


async def test_list_oldest_first(client: httpx.AsyncClient) -> None:
    first = await create_key(client, name="first")
    second = await create_key(client, name="second")

    listed = (await client.get("/v1/api-keys")).json()["data"]
    ids = [key["id"] for key in listed]
    assert ids.index(first["id"]) < ids.index(second["id"])
    assert listed[0]["name"] == "tests"


async def test_revoked_key_refused_at_once(client: httpx.AsyncClient) -> None:
    created = await create_key(client)
    headers = bearer(str(created["key"]))
    before = await client.post("/v1/messages", json=message_body(), headers=headers)
    assert before.status_code == 202

    revoked = await client.delete(f"/v1/api-keys/{created['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None

    after = await client.post("/v1/messages", json=message_body(), headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_api_key"
    assert "revoked" in after.json()["error"]["message"]


async def test_revoke_twice_keeps_time(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await create_key(client)
    first = (await client.delete(f"/v1/api-keys/{created['id']}")).json()
    clock.advance(timedelta(minutes=5))
    second = (await client.delete(f"/v1/api-keys/{created['id']}")).json()
    assert second["revoked_at"] == first["revoked_at"]


async def test_unknown_key_id_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/v1/api-keys/key_missing"),
        await client.delete("/v1/api-keys/key_missing"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "api_key_not_found"


async def test_expired_key_refused(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    expires_at = (T0 + timedelta(hours=1)).isoformat()
    created = await create_key(client, expires_at=expires_at)
    headers = bearer(str(created["key"]))
    assert created["expires_at"] == "2026-04-19T15:30:00.000Z"
    ok = await client.post("/v1/messages", json=message_body(), headers=headers)
    assert ok.status_code == 202

    clock.advance(timedelta(hours=1))
    refused = await client.post("/v1/messages", json=message_body(), headers=headers)
    assert refused.status_code == 401
    assert "expired" in refused.json()["error"]["message"]


async def test_missing_scope_named(client: httpx.AsyncClient, engine: Engine) -> None:
    reader = await key_with_scopes(engine, Scope.MESSAGES_READ)

    response = await client.post(
        "/v1/messages", json=message_body(), headers=bearer(reader)
    )

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["scope"] == "messages:send"
    assert "messages:send" in error["message"]


async def test_admin_scope_required(client: httpx.AsyncClient, engine: Engine) -> None:
    sender = await key_with_scopes(engine, Scope.MESSAGES_SEND, Scope.MESSAGES_READ)
    for method, path in (
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("GET", "/v1/api-keys/key_x"),
        ("DELETE", "/v1/api-keys/key_x"),
    ):
        response = await client.request(method, path, headers=bearer(sender))
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["scope"] == "admin"


async def test_create_rejects_bad_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/api-keys",
        json={
            "name": "",
            "scopes": ["messages:send", "mail:everything"],
            "environment": "staging",
            "sender_domains": ["acme.example", "bad domain"],
            "rate_limit": 0,
            "expires_at": "2020-01-01T00:00:00Z",
            "colour": "blue",
        },
    )

    assert response.status_code == 422
    fields = {
        error["field"]: error["code"] for error in response.json()["error"]["errors"]
    }
    assert fields == {
        "colour": "unknown_field",
        "name": "missing_field",
        "scopes.1": "invalid_value",
        "environment": "invalid_value",
        "sender_domains.1": "invalid_domain",
        "rate_limit": "invalid_value",
        "expires_at": "in_the_past",
    }


async def test_create_needs_scopes(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/api-keys", json={"name": "ci"})
    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "scopes"


async def test_sender_domain_restricted(client: httpx.AsyncClient) -> None:
    created = await create_key(client, sender_domains=["Acme.Example"])
    headers = bearer(str(created["key"]))
    assert created["sender_domains"] == ["acme.example"]

    allowed = await client.post("/v1/messages", json=message_body(), headers=headers)
    other = await client.post(
        "/v1/messages",
        json=message_body(**{"from": "Evil <ceo@other.example>"}),
        headers=headers,
    )

    assert allowed.status_code == 202
    assert other.status_code == 422
    [error] = other.json()["error"]["errors"]
    assert error["field"] == "from"
    assert error["code"] == "sender_domain_not_allowed"


async def test_last_used_once_per_window(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await create_key(client, scopes=["messages:read"])
    headers = bearer(str(created["key"]))

    await client.get("/v1/messages", headers=headers)
    clock.advance(timedelta(seconds=20))
    await client.get("/v1/messages", headers=headers)
    first = (await client.get(f"/v1/api-keys/{created['id']}")).json()
    assert first["last_used_at"] == "2026-04-19T14:30:00.000Z"

    clock.advance(timedelta(minutes=1))
    await client.get("/v1/messages", headers=headers)
    later = (await client.get(f"/v1/api-keys/{created['id']}")).json()
    assert later["last_used_at"] == "2026-04-19T14:31:20.000Z"


async def test_rate_limit_per_key(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await create_key(client, scopes=["messages:read"], rate_limit=3)
    headers = bearer(str(created["key"]))
    clock.advance(timedelta(seconds=15))

    statuses = []
    for _ in range(4):
        response = await client.get("/v1/messages", headers=headers)
        statuses.append(response.status_code)

    assert statuses == [200, 200, 200, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["x-ratelimit-limit"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == str(int(T0.timestamp()) + 60)
    assert response.headers["retry-after"] == "45"


@pytest.fixture
async def mx_engine(
    tmp_path: Path, clock: ManualClock, dns_server: DnsServer, smtp_server: SmtpServer
) -> AsyncIterator[Engine]:
    """An engine that delivers to the test SMTP server through the test DNS."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'mx.db'}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=5,
    )
    async with Engine.from_settings(settings, clock=clock, workers=False) as opened:
        yield opened


async def test_test_key_uses_sink(mx_engine: Engine, smtp_server: SmtpServer) -> None:
    secret, _ = await mx_engine.create_api_key("ci", environment=Environment.TEST)
    transport = httpx.ASGITransport(app=create_app(mx_engine))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sendarix.test", headers=bearer(secret)
    ) as client:
        accepted = await client.post(
            "/v1/messages", json=message_body(recipient=f"ada@{DOMAIN}")
        )
        message_id = accepted.json()["message_id"]
        await mx_engine.deliver_due()
        message = (await client.get(f"/v1/messages/{message_id}")).json()
        events = (await client.get(f"/v1/messages/{message_id}/events")).json()

    assert message["status"] == "delivered"
    assert message["test_mode"] is True
    assert message["last_smtp_reply"]["mx_host"] == "sink"
    assert [event["type"] for event in events["data"]] == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]
    assert smtp_server.connections == 0
    assert smtp_server.messages == []


async def test_live_key_uses_smtp(mx_engine: Engine, smtp_server: SmtpServer) -> None:
    secret, _ = await mx_engine.create_api_key("prod")
    transport = httpx.ASGITransport(app=create_app(mx_engine))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sendarix.test", headers=bearer(secret)
    ) as client:
        await client.post("/v1/messages", json=message_body(recipient=f"ada@{DOMAIN}"))
        await mx_engine.deliver_due()

    assert len(smtp_server.messages) == 1


async def test_errors_show_json_values(client: httpx.AsyncClient) -> None:
    body = {
        "name": "ci",
        "scopes": ["messages:send"],
        "environment": True,
        "sender_domains": [None],
        "rate_limit": [5],
    }

    response = await client.post("/v1/api-keys", json=body)

    assert response.status_code == 422
    messages = {
        error["field"]: error["message"] for error in response.json()["error"]["errors"]
    }
    assert messages["environment"].endswith("got true")
    assert messages["sender_domains.0"].endswith("got null")
    assert messages["rate_limit"].endswith("got [5]")
