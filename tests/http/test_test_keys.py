"""Operations that reject test keys because they act on live mail, over the real app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.keys import Environment
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio

ROUTE = {
    "description": "partners through the relay",
    "match": {"recipient_domains": ["partner.test"]},
    "action": {"transport": "smarthost", "smarthost": "smtp://127.0.0.1:2526"},
}
TEMPLATE = {"name": "otp-code", "subject": "Code {{ code }}", "text": "{{ code }}"}
REPLAY_RANGE = {"from": "2026-04-19T00:00:00Z", "to": "2026-04-20T00:00:00Z"}

# Every operation that rejects test keys, with a body a live key could send.
LIVE_ONLY: list[tuple[str, str, Any]] = [
    ("GET", "/v1/queue", None),
    ("POST", "/v1/queue/pause", {"priority": "low"}),
    ("POST", "/v1/queue/resume", {"priority": "low"}),
    ("POST", "/v1/queue/retry", {}),
    ("POST", "/v1/queue/cancel", {"dry_run": True}),
    ("POST", "/v1/routes", ROUTE),
    ("PATCH", "/v1/routes/default", {"description": "changed"}),
    ("DELETE", "/v1/routes/rt_unknown", None),
    ("POST", "/v1/routes/reorder", {"order": []}),
    ("POST", "/v1/domains", {"domain": "acme.example"}),
    ("DELETE", "/v1/domains/acme.example", None),
    ("POST", "/v1/domains/acme.example/verify", None),
    ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/"}),
    ("PATCH", "/v1/webhooks/wh_unknown", {"enabled": False}),
    ("DELETE", "/v1/webhooks/wh_unknown", None),
    ("POST", "/v1/webhooks/wh_unknown/rotate-secret", None),
    ("POST", "/v1/webhooks/wh_unknown/deliveries/dl_unknown/replay", None),
    ("POST", "/v1/webhooks/wh_unknown/replay", REPLAY_RANGE),
    ("POST", "/v1/templates/otp-code/publish", None),
    ("DELETE", "/v1/templates/otp-code", None),
    ("POST", "/v1/suppressions", {"recipient": "user@example.com"}),
    ("DELETE", "/v1/suppressions/user@example.com", None),
    ("POST", "/v1/api-keys", {"name": "escalated", "scopes": ["admin"]}),
]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def test_key(engine: Engine) -> str:
    secret, _ = await engine.create_api_key("ci", environment=Environment.TEST)
    return secret


def assert_rejected(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"].startswith("test keys can't ")
    assert error["message"].endswith("; use a live key")


@pytest.mark.parametrize(("method", "path", "body"), LIVE_ONLY)
async def test_live_only_operation_rejected(
    client: httpx.AsyncClient, test_key: str, method: str, path: str, body: Any
) -> None:
    response = await client.request(method, path, json=body, headers=bearer(test_key))

    assert_rejected(response)


async def test_test_key_creates_test_key(
    client: httpx.AsyncClient, test_key: str
) -> None:
    body = {"name": "ci-2", "scopes": ["messages:send"], "environment": "test"}
    response = await client.post("/v1/api-keys", json=body, headers=bearer(test_key))

    assert response.status_code == 201, response.text
    assert response.json()["environment"] == "test"
    assert response.json()["key"].startswith("sk_test_")


async def test_test_key_creates_no_live_key(
    client: httpx.AsyncClient, test_key: str
) -> None:
    before = [key["id"] for key in (await client.get("/v1/api-keys")).json()["data"]]
    explicit = {"name": "escalated", "scopes": ["admin"], "environment": "live"}
    defaulted = {"name": "escalated", "scopes": ["admin"]}

    explicit_reply = await client.post(
        "/v1/api-keys", json=explicit, headers=bearer(test_key)
    )
    defaulted_reply = await client.post(
        "/v1/api-keys", json=defaulted, headers=bearer(test_key)
    )

    assert_rejected(explicit_reply)
    assert_rejected(defaulted_reply)
    after = [key["id"] for key in (await client.get("/v1/api-keys")).json()["data"]]
    assert after == before


async def test_test_key_revokes_only_test_keys(
    client: httpx.AsyncClient, engine: Engine, test_key: str
) -> None:
    _, live = await engine.create_api_key("production")
    _, other_test = await engine.create_api_key("ci-2", environment=Environment.TEST)

    live_reply = await client.delete(
        f"/v1/api-keys/{live.id}", headers=bearer(test_key)
    )
    test_reply = await client.delete(
        f"/v1/api-keys/{other_test.id}", headers=bearer(test_key)
    )

    assert_rejected(live_reply)
    assert (await engine.get_api_key(live.id)).revoked_at is None
    assert test_reply.status_code == 200
    assert test_reply.json()["revoked_at"] is not None


async def test_test_key_sees_only_test_keys(
    client: httpx.AsyncClient, engine: Engine, test_key: str
) -> None:
    _, live = await engine.create_api_key("production")
    _, other_test = await engine.create_api_key("ci-2", environment=Environment.TEST)

    listed = await client.get("/v1/api-keys", headers=bearer(test_key))
    live_reply = await client.get(f"/v1/api-keys/{live.id}", headers=bearer(test_key))
    test_reply = await client.get(
        f"/v1/api-keys/{other_test.id}", headers=bearer(test_key)
    )
    live_listed = await client.get("/v1/api-keys")

    environments = {key["environment"] for key in listed.json()["data"]}
    assert environments == {"test"}
    assert other_test.id in {key["id"] for key in listed.json()["data"]}
    assert live_reply.status_code == 404
    assert live_reply.json()["error"]["code"] == "api_key_not_found"
    assert test_reply.status_code == 200
    assert live.id in {key["id"] for key in live_listed.json()["data"]}


async def test_test_key_leaves_live_mail_queued(
    client: httpx.AsyncClient, test_key: str
) -> None:
    # The app runs without delivery workers, so the message stays queued.
    sent = await client.post("/v1/messages", json=message_body())
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["message_id"]

    cancelled = await client.post("/v1/queue/cancel", json={}, headers=bearer(test_key))
    paused = await client.post(
        "/v1/queue/pause", json={"priority": "normal"}, headers=bearer(test_key)
    )

    assert_rejected(cancelled)
    assert_rejected(paused)
    message = await client.get(f"/v1/messages/{message_id}")
    assert message.json()["status"] == "queued"
    queue = (await client.get("/v1/queue")).json()
    assert queue["counts"]["total"] == 1
    assert queue["paused"] == {"priorities": [], "sites": []}


async def test_test_key_leaves_routes_unchanged(
    client: httpx.AsyncClient, test_key: str
) -> None:
    before = (await client.get("/v1/routes")).json()

    created = await client.post("/v1/routes", json=ROUTE, headers=bearer(test_key))
    live_reads = await client.get("/v1/routes", headers=bearer(test_key))

    assert_rejected(created)
    assert live_reads.status_code == 200
    assert (await client.get("/v1/routes")).json() == before


async def test_test_key_drafts_templates(
    client: httpx.AsyncClient, test_key: str
) -> None:
    headers = bearer(test_key)
    created = await client.post("/v1/templates", json=TEMPLATE, headers=headers)
    drafted = await client.patch(
        "/v1/templates/otp-code", json={"text": "v2 {{ code }}"}, headers=headers
    )
    rendered = await client.post(
        "/v1/templates/otp-code/render",
        json={"template_data": {"code": "42"}},
        headers=headers,
    )
    published = await client.post("/v1/templates/otp-code/publish", headers=headers)

    assert created.status_code == 201, created.text
    assert drafted.status_code == 200, drafted.text
    assert rendered.status_code == 200, rendered.text
    assert_rejected(published)
    template = (await client.get("/v1/templates/otp-code")).json()
    assert template["published_version"] == 1


async def test_live_key_still_controls_queue(client: httpx.AsyncClient) -> None:
    paused = await client.post("/v1/queue/pause", json={"priority": "low"})
    resumed = await client.post("/v1/queue/resume", json={"priority": "low"})

    assert paused.status_code == 200, paused.text
    assert resumed.status_code == 200, resumed.text
