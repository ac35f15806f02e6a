"""``/v1/webhooks`` through the real ASGI app."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Scope
from sendarix_http.app import OPERATIONS, create_app
from sendarix_http.openapi import build_document
from tests.support.dns_server import DnsServer
from tests.webhooks.conftest import api_client, message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(engine) as opened:
        yield opened


async def test_create_returns_secret_once(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["message.delivered"]},
    )

    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["message.delivered"]
    assert body["enabled"] is True
    read = await client.get(f"/v1/webhooks/{body['id']}")
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await client.get("/v1/webhooks")
    assert [w["id"] for w in listed.json()["data"]] == [body["id"]]
    assert "secret" not in listed.json()["data"][0]


async def test_create_without_events_gets_all(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})

    assert created.json()["events"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://127.0.0.1/"}, "url"),
        ({"url": "http://127.0.0.1/", "events": ["message.sent"]}, "events.0"),
        ({"url": "http://127.0.0.1/", "events": "message.delivered"}, "events"),
        ({"url": "http://127.0.0.1/", "secret": "mine"}, "secret"),
    ],
)
async def test_create_invalid_is_422(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/webhooks", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == field


async def test_private_url_rejected_by_default(
    settings: Settings, clock: ManualClock
) -> None:
    strict = Settings(database_url=settings.database_url, delivery_mode="sink")
    async with Engine.from_settings(strict, clock=clock, workers=False) as engine:
        secret, _ = await engine.create_api_key("tests")
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://sendarix.test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:
            loopback = await client.post(
                "/v1/webhooks", json={"url": "http://127.0.0.1:8080/hooks"}
            )
            metadata = await client.post(
                "/v1/webhooks", json={"url": "http://169.254.169.254/latest"}
            )
            named = await client.post(
                "/v1/webhooks", json={"url": "http://localhost:8080/hooks"}
            )

    assert loopback.status_code == 422
    assert "loopback" in loopback.json()["error"]["errors"][0]["message"]
    assert metadata.status_code == 422
    assert named.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
    ],
)
async def test_metadata_url_advice(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post("/v1/webhooks", json={"url": url})

    assert response.status_code == 422
    message = response.json()["error"]["errors"][0]["message"]
    assert "no setting allows metadata addresses" in message
    assert "SENDARIX_WEBHOOK_ALLOW_PRIVATE" not in message


async def test_idn_url_kept_as_given(
    client: httpx.AsyncClient, dns_server: DnsServer
) -> None:
    dns_server.add_a("xn--bcher-kva.test", "127.0.0.1")

    created = await client.post(
        "/v1/webhooks", json={"url": "http://xn--bcher-kva.test:9/idn"}
    )
    idn = await client.post("/v1/webhooks", json={"url": "http://bücher.test:9/idn"})

    assert created.status_code == 201
    assert idn.status_code == 201
    assert idn.json()["url"] == "http://bücher.test:9/idn"


async def test_invalid_idn_url_rejected(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    webhook_id = created.json()["id"]

    posted = await client.post("/v1/webhooks", json={"url": "http://\u0300a.test/"})
    patched = await client.patch(
        f"/v1/webhooks/{webhook_id}", json={"url": "http://\u0300a.test/"}
    )

    for response in (posted, patched):
        assert response.status_code == 422
        [error] = response.json()["error"]["errors"]
        assert error["field"] == "url"
        assert "internationalized domain name" in error["message"]


async def test_update_changes_fields(client: httpx.AsyncClient) -> None:
    created = (
        await client.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/", "events": ["message.delivered"]},
        )
    ).json()

    updated = await client.patch(
        f"/v1/webhooks/{created['id']}",
        json={"description": "CRM", "events": None, "enabled": False},
    )

    assert updated.status_code == 200
    body = updated.json()
    assert body["description"] == "CRM"
    assert body["events"] is None
    assert body["enabled"] is False
    assert body["url"] == "http://127.0.0.1:9/"


async def test_duplicate_events_stored_once(client: httpx.AsyncClient) -> None:
    twice = ["message.queued", "message.queued"]
    created = await client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": twice}
    )
    endpoint_id = created.json()["id"]

    updated = await client.patch(f"/v1/webhooks/{endpoint_id}", json={"events": twice})
    read = await client.get(f"/v1/webhooks/{endpoint_id}")

    assert created.json()["events"] == ["message.queued"]
    assert updated.status_code == 200
    assert updated.json()["events"] == ["message.queued"]
    assert read.json()["events"] == ["message.queued"]


async def test_update_null_url_or_enabled_422(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})

    updated = await client.patch(
        f"/v1/webhooks/{created.json()['id']}", json={"url": None, "enabled": None}
    )

    assert updated.status_code == 422
    fields = [error["field"] for error in updated.json()["error"]["errors"]]
    assert fields == ["url", "enabled"]


async def test_update_null_description_clears_it(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "description": "CRM"}
    )

    updated = await client.patch(
        f"/v1/webhooks/{created.json()['id']}", json={"description": None}
    )

    assert updated.status_code == 200
    assert updated.json()["description"] == ""
    assert updated.json()["url"] == "http://127.0.0.1:9/"


async def test_update_unknown_field_422(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()

    response = await client.patch(f"/v1/webhooks/{created['id']}", json={"bogus": 1})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "bogus"
    assert error["code"] == "unknown_field"


async def test_delete_then_404(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()

    deleted = await client.delete(f"/v1/webhooks/{created['id']}")
    again = await client.get(f"/v1/webhooks/{created['id']}")

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "webhook_not_found"


async def test_rotate_returns_new_secret(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()

    rotated = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret")

    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None


async def test_deliveries_list_attempts(
    client: httpx.AsyncClient,
    engine: Engine,
    services: EventServices,
    receiver: Receiver,
) -> None:
    receiver.start()
    created = (await client.post("/v1/webhooks", json={"url": receiver.url})).json()
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()

    listed = await client.get(f"/v1/webhooks/{created['id']}/deliveries")

    assert listed.status_code == 200
    [attempt] = listed.json()["data"]
    assert attempt["status_code"] == 200
    assert attempt["outcome"] == "succeeded"
    assert attempt["event_type"] == "message.queued"
    assert attempt["latency_ms"] >= 0
    assert attempt["response"] == '{"received": true}'
    replayed = await client.post(
        f"/v1/webhooks/{created['id']}/deliveries/{attempt['delivery_id']}/replay"
    )
    assert replayed.status_code == 202
    assert await services.dispatcher.run_once() == 1


async def test_replay_replies_match_schemas(
    client: httpx.AsyncClient,
    engine: Engine,
    services: EventServices,
    receiver: Receiver,
) -> None:
    receiver.start()
    created = (await client.post("/v1/webhooks", json={"url": receiver.url})).json()
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()
    [attempt] = (await client.get(f"/v1/webhooks/{created['id']}/deliveries")).json()[
        "data"
    ]
    replay_path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"
    range_path = "/v1/webhooks/{webhook_id}/replay"

    replayed = await client.post(
        f"/v1/webhooks/{created['id']}/deliveries/{attempt['delivery_id']}/replay"
    )
    ranged = await client.post(
        f"/v1/webhooks/{created['id']}/replay",
        json={
            "from": "2000-01-01T00:00:00Z",
            "to": "2100-01-01T00:00:00Z",
            "statuses": ["succeeded"],
        },
    )

    assert replayed.status_code == 202
    assert reply_schema(replay_path, 202).is_valid(replayed.json()), replayed.json()
    assert ranged.status_code == 202
    assert reply_schema(range_path, 202).is_valid(ranged.json()), ranged.json()


def reply_schema(path: str, status: int) -> Any:
    """Return a validator for the documented body of a ``POST path`` reply."""
    document = build_document(OPERATIONS)
    reply = document["paths"][path]["post"]["responses"][str(status)]
    schema = reply["content"]["application/json"]["schema"]
    root = {**schema, "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(root)


async def test_deliveries_reject_huge_cursor(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    cursor = base64.urlsafe_b64encode(b"99999999999999999999999").decode()

    listed = await client.get(
        f"/v1/webhooks/{created.json()['id']}/deliveries", params={"cursor": cursor}
    )

    assert listed.status_code == 422
    assert listed.json()["error"]["errors"][0]["code"] == "invalid_cursor"


async def test_replay_range_needs_bounds(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()

    response = await client.post(
        f"/v1/webhooks/{created['id']}/replay", json={"from": "2026-04-19T00:00Z"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "to"


async def test_replay_range_unknown_field_422(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()
    body = {
        "from": "2026-12-05T00:00:00Z",
        "to": "2026-12-06T00:00:00Z",
        "status": ["succeeded"],
    }

    response = await client.post(f"/v1/webhooks/{created['id']}/replay", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "status"
    assert error["code"] == "unknown_field"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"from": "missing_field", "to": "missing_field"}),
        ({"from": "x", "to": "y"}, {"from": "invalid_time", "to": "invalid_time"}),
        (
            {"from": True, "to": "y", "statuses": ["pending"], "extra": 1},
            {
                "extra": "unknown_field",
                "from": "invalid_type",
                "to": "invalid_time",
                "statuses": "invalid_statuses",
            },
        ),
    ],
)
async def test_replay_range_lists_every_error(
    client: httpx.AsyncClient, body: dict[str, object], expected: dict[str, str]
) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()

    response = await client.post(f"/v1/webhooks/{created['id']}/replay", json=body)

    assert response.status_code == 422
    errors = response.json()["error"]["errors"]
    assert {error["field"]: error["code"] for error in errors} == expected
    messages = " ".join(error["message"] for error in errors)
    assert "True" not in messages
    assert "['pending']" not in messages


async def test_replay_range_reversed_names_values(
    client: httpx.AsyncClient,
) -> None:
    created = (
        await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"})
    ).json()
    body = {"from": "2026-12-06T00:00:00Z", "to": "2026-12-05T00:00:00Z"}

    response = await client.post(f"/v1/webhooks/{created['id']}/replay", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "invalid_range"
    assert "2026-12-06T00:00:00Z" in error["message"]
    assert "2026-12-05T00:00:00Z" in error["message"]


async def test_webhooks_need_scope(client: httpx.AsyncClient, engine: Engine) -> None:
    secret, _ = await engine.create_api_key(
        "reader", scopes=frozenset({Scope.MESSAGES_READ})
    )

    response = await client.get(
        "/v1/webhooks", headers={"Authorization": f"Bearer {secret}"}
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": ""}, "invalid_value"),
        ({}, "missing_field"),
        ({"url": None}, "missing_field"),
        ({"url": 5}, "invalid_type"),
    ],
)
async def test_create_url_errors(
    client: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    response = await client.post("/v1/webhooks", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "url"
    assert error["code"] == code
    if code != "invalid_type":
        assert "absolute http or https URL" in error["message"]
