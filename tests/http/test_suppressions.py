"""``/v1/suppressions`` and ``/v1/unsubscribes`` through the real ASGI app."""

from __future__ import annotations

import httpx
import pytest

from sendarix_backends.engine import Engine
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio


async def test_suppression_blocks_sends(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    created = await client.post(
        "/v1/suppressions",
        json={"recipient": "User@Example.com", "reason": "user_unsubscribed"},
    )
    assert created.status_code == 201
    assert created.json()["recipient"] == "user@example.com"

    sent = (await client.post("/v1/messages", json=message_body())).json()
    await engine.deliver_due()
    message = (await client.get(f"/v1/messages/{sent['message_id']}")).json()
    assert message["status"] == "suppressed"


async def test_suppression_crud(client: httpx.AsyncClient) -> None:
    await client.post("/v1/suppressions", json={"recipient": "a@example.com"})
    await client.post(
        "/v1/suppressions", json={"recipient": "b@example.com", "reason": "complaint"}
    )

    found = await client.get("/v1/suppressions/a@example.com")
    assert found.json()["reason"] == "manual"
    listed = await client.get("/v1/suppressions", params={"reason": "complaint"})
    assert [entry["recipient"] for entry in listed.json()["data"]] == ["b@example.com"]

    assert (await client.delete("/v1/suppressions/a@example.com")).status_code == 204
    assert (await client.get("/v1/suppressions/a@example.com")).status_code == 404


async def test_null_reason_is_manual(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/suppressions", json={"recipient": "a@example.com", "reason": None}
    )

    assert response.status_code == 201, response.text
    assert response.json()["reason"] == "manual"


async def test_reason_of_wrong_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/suppressions", json={"recipient": "a@example.com", "reason": 5}
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "reason"
    assert error["code"] == "invalid_type"


async def test_repeated_unsubscribe_of_bounced_recorded_once(
    client: httpx.AsyncClient,
) -> None:
    await client.post(
        "/v1/suppressions", json={"recipient": "b@example.com", "reason": "hard_bounce"}
    )

    for _ in range(3):
        response = await client.post(
            "/v1/unsubscribes", json={"recipient": "b@example.com"}
        )
        assert response.status_code == 200, response.text

    events = await client.get(
        "/v1/events",
        params={"type": "recipient.unsubscribed", "recipient": "b@example.com"},
    )
    assert len(events.json()["data"]) == 1


async def test_unsubscribes_view(client: httpx.AsyncClient) -> None:
    await client.post("/v1/unsubscribes", json={"recipient": "u@example.com"})
    await client.post("/v1/suppressions", json={"recipient": "m@example.com"})

    listed = (await client.get("/v1/unsubscribes")).json()["data"]
    assert [(e["recipient"], e["reason"]) for e in listed] == [
        ("u@example.com", "user_unsubscribed")
    ]
    assert (await client.get("/v1/unsubscribes/m@example.com")).status_code == 404


@pytest.mark.parametrize("recipient", ["m@example.com", "nobody@example.com"])
async def test_unsubscribe_not_found_code(
    client: httpx.AsyncClient, recipient: str
) -> None:
    await client.post("/v1/suppressions", json={"recipient": "m@example.com"})

    response = await client.get(f"/v1/unsubscribes/{recipient}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unsubscribe_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "recipient"),
        ({"recipient": "not-an-address"}, "recipient"),
        ({"recipient": "a@example.com", "reason": "bored"}, "reason"),
    ],
)
async def test_suppression_rejects_bad_input(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    response = await client.post("/v1/suppressions", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == field


async def test_slash_in_recipient_path(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/suppressions", json={"recipient": "a+tag/slash@example.com"}
    )
    assert created.status_code == 201
    found = await client.get("/v1/suppressions/a%2Btag%2Fslash%40example.com")
    assert found.status_code == 200
    removed = await client.delete("/v1/suppressions/a+tag/slash@example.com")
    assert removed.status_code == 204


async def test_repeated_suppression_200(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/suppressions", json={"recipient": "r@example.com"})
    second = await client.post("/v1/suppressions", json={"recipient": "r@example.com"})
    assert first.status_code == 201
    assert second.status_code == 200


async def test_suppression_object_address(client: httpx.AsyncClient) -> None:
    body = {"recipient": {"name": "Lovelace, Ada", "email": "Ada@Example.com"}}
    response = await client.post("/v1/suppressions", json=body)
    assert response.status_code == 201
    assert response.json()["recipient"] == "ada@example.com"


async def test_suppression_unknown_field(client: httpx.AsyncClient) -> None:
    body = {"recipient": "r@example.com", "reasn": "manual"}
    response = await client.post("/v1/suppressions", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "reasn"


async def test_idn_lookup_matches(client: httpx.AsyncClient) -> None:
    await client.post("/v1/suppressions", json={"recipient": "user@bücher.example"})
    found = await client.get("/v1/suppressions/user@bücher.example")
    assert found.status_code == 200
    assert found.json()["recipient"] == "user@xn--bcher-kva.example"


async def test_test_key_cannot_suppress(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    from sendarix_core.keys import Environment

    secret, _ = await engine.create_api_key("ci", environment=Environment.TEST)
    response = await client.post(
        "/v1/suppressions",
        json={"recipient": "victim@example.com"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 403
