"""``POST /v1/messages/batch`` through the real ASGI app."""

from __future__ import annotations

import anyio
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.keys import Scope
from tests.http.conftest import key_with_scopes, message_body

pytestmark = pytest.mark.anyio

BATCH = "/v1/messages/batch"


def mixed_items(count: int) -> tuple[list[dict[str, object]], set[int]]:
    """Return ``count`` items where every seventh has a bad recipient."""
    items: list[dict[str, object]] = []
    invalid = set()
    for index in range(count):
        if index % 7 == 3:
            items.append(message_body(recipient=f"user{index}@"))
            invalid.add(index)
        else:
            items.append(message_body(recipient=f"user{index}@example.com"))
    return items, invalid


async def stored_count(client: httpx.AsyncClient) -> int:
    total = 0
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/messages", params=params)).json()
        total += len(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total


async def test_strict_valid_batch_queued(client: httpx.AsyncClient) -> None:
    items = [message_body(recipient=f"u{n}@example.com") for n in range(3)]

    response = await client.post(BATCH, json={"messages": items})

    assert response.status_code == 202
    data = response.json()["data"]
    assert [item["status"] for item in data] == ["queued"] * 3
    for number, item in enumerate(data):
        message = (await client.get(f"/v1/messages/{item['message_id']}")).json()
        assert message["recipient"] == f"u{number}@example.com"


async def test_permissive_500_mixed(client: httpx.AsyncClient) -> None:
    items, invalid = mixed_items(500)

    response = await client.post(BATCH, json={"messages": items, "mode": "permissive"})

    assert response.status_code == 202
    data = response.json()["data"]
    assert len(data) == 500
    for index, result in enumerate(data):
        if index in invalid:
            [error] = result["errors"]
            assert error["field"] == f"messages.{index}.recipient"
            assert error["code"] == "missing_domain"
        else:
            assert result["message_id"].startswith("msg_")
            assert result["status"] == "queued"
    assert await stored_count(client) == 500 - len(invalid)


async def test_strict_500_mixed_rejected(client: httpx.AsyncClient) -> None:
    items, invalid = mixed_items(500)

    response = await client.post(BATCH, json={"messages": items, "mode": "strict"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    fields = [entry["field"] for entry in error["errors"]]
    assert fields == [f"messages.{index}.recipient" for index in sorted(invalid)]
    assert await stored_count(client) == 0


async def test_item_errors_carry_every_field(client: httpx.AsyncClient) -> None:
    bad = {"recipient": "ada@example.com", "subject": "x\r\nBcc: all", "colour": 1}

    response = await client.post(
        BATCH, json={"messages": [message_body(), bad, 7], "mode": "permissive"}
    )

    data = response.json()["data"]
    assert "message_id" in data[0]
    fields = {error["field"]: error["code"] for error in data[1]["errors"]}
    assert fields == {
        "messages.1.colour": "unknown_field",
        "messages.1.subject": "header_injection",
        "messages.1.text": "missing_body",
        "messages.1.from": "missing_field",
    }
    assert data[2]["errors"][0]["field"] == "messages.2"
    assert data[2]["errors"][0]["code"] == "invalid_type"
    assert data[2]["errors"][0]["message"] == "expected a message object, got 7"


async def test_batch_shape_errors(client: httpx.AsyncClient) -> None:
    cases = [
        ({}, {"messages": "invalid_type"}),
        ({"messages": []}, {"messages": "invalid_count"}),
        ({"messages": [message_body()] * 501}, {"messages": "invalid_count"}),
        ({"messages": [message_body()], "mode": "lenient"}, {"mode": "invalid_value"}),
        ({"messages": [message_body()], "extra": 1}, {"extra": "unknown_field"}),
    ]
    for body, expected in cases:
        response = await client.post(BATCH, json=body)
        assert response.status_code == 422, body
        errors = response.json()["error"]["errors"]
        assert {error["field"]: error["code"] for error in errors} == expected


async def test_batch_key_replays(client: httpx.AsyncClient) -> None:
    body = {"messages": [message_body(), message_body(recipient="b@example.com")]}
    headers = {"Idempotency-Key": "batch-1"}

    first = await client.post(BATCH, json=body, headers=headers)
    again = await client.post(BATCH, json=body, headers=headers)

    assert first.status_code == 202
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await stored_count(client) == 2


async def test_batch_key_other_body_409(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "batch-2"}
    await client.post(BATCH, json={"messages": [message_body()]}, headers=headers)

    changed = {"messages": [message_body(subject="Another")]}
    response = await client.post(BATCH, json=changed, headers=headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert await stored_count(client) == 1


async def test_concurrent_batches_one_stored(client: httpx.AsyncClient) -> None:
    body = {"messages": [message_body(recipient=f"u{n}@example.com") for n in range(5)]}
    headers = {"Idempotency-Key": "batch-3"}
    responses: list[httpx.Response] = []

    async def post() -> None:
        responses.append(await client.post(BATCH, json=body, headers=headers))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(post)

    assert {response.status_code for response in responses} == {202}
    assert len({response.text for response in responses}) == 1
    assert await stored_count(client) == 5


async def test_item_may_carry_batch_key(client: httpx.AsyncClient) -> None:
    item = message_body(headers={"X-Idempotency-Key": "shared-1"})
    body = {"messages": [item, message_body(recipient="b@example.com")]}
    headers = {"Idempotency-Key": "shared-1"}

    first = await client.post(BATCH, json=body, headers=headers)
    again = await client.post(BATCH, json=body, headers=headers)
    single = await client.post("/v1/messages", json=item)

    assert first.status_code == 202
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert single.status_code == 202
    assert single.headers["idempotent-replayed"] == "true"
    assert single.json()["message_id"] == first.json()["data"][0]["message_id"]
    assert await stored_count(client) == 2


async def test_single_key_free_for_batch(client: httpx.AsyncClient) -> None:
    single = message_body(headers={"X-Idempotency-Key": "shared-2"})
    await client.post("/v1/messages", json=single)
    body = {"messages": [message_body(recipient="b@example.com")]}

    response = await client.post(
        BATCH, json=body, headers={"Idempotency-Key": "shared-2"}
    )

    assert response.status_code == 202
    assert "idempotent-replayed" not in response.headers
    assert await stored_count(client) == 2


async def test_item_key_replays_single_send(client: httpx.AsyncClient) -> None:
    item = message_body(headers={"X-Idempotency-Key": "item-1"})
    single = (await client.post("/v1/messages", json=item)).json()

    response = await client.post(BATCH, json={"messages": [item, message_body()]})

    data = response.json()["data"]
    assert data[0] == {"message_id": single["message_id"], "status": "queued"}
    assert data[1]["message_id"] != single["message_id"]
    assert await stored_count(client) == 2


async def test_item_key_conflict_permissive(client: httpx.AsyncClient) -> None:
    await client.post(
        "/v1/messages", json=message_body(headers={"X-Idempotency-Key": "item-2"})
    )
    changed = message_body(subject="Other", headers={"X-Idempotency-Key": "item-2"})

    response = await client.post(
        BATCH, json={"messages": [message_body(), changed], "mode": "permissive"}
    )

    assert response.status_code == 202
    [error] = response.json()["data"][1]["errors"]
    assert error["field"] == "messages.1.headers.X-Idempotency-Key"
    assert error["code"] == "idempotency_key_reused"
    assert await stored_count(client) == 2


async def test_item_key_conflict_strict(client: httpx.AsyncClient) -> None:
    await client.post(
        "/v1/messages", json=message_body(headers={"X-Idempotency-Key": "item-3"})
    )
    changed = message_body(subject="Other", headers={"X-Idempotency-Key": "item-3"})
    headers = {"Idempotency-Key": "batch-4"}
    body = {"messages": [message_body(), changed]}

    response = await client.post(BATCH, json=body, headers=headers)

    assert response.status_code == 409
    assert "'item-3' of messages.1" in response.json()["error"]["message"]
    assert await stored_count(client) == 1
    # The rolled-back batch did not claim its own key either.
    fixed = {"messages": [message_body()]}
    retried = await client.post(BATCH, json=fixed, headers=headers)
    assert retried.status_code == 202


async def test_batch_needs_send_scope(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    reader = await key_with_scopes(engine, Scope.MESSAGES_READ)
    response = await client.post(
        BATCH,
        json={"messages": [message_body()]},
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["scope"] == "messages:send"


async def test_batch_respects_sender_domains(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    secret, _ = await engine.create_api_key("acme", sender_domains=["acme.example"])
    other = message_body(**{"from": "x@other.example"})

    response = await client.post(
        BATCH,
        json={"messages": [message_body(), other], "mode": "permissive"},
        headers={"Authorization": f"Bearer {secret}"},
    )

    [error] = response.json()["data"][1]["errors"]
    assert error["field"] == "messages.1.from"
    assert error["code"] == "sender_domain_not_allowed"


async def test_mode_error_shows_json_value(client: httpx.AsyncClient) -> None:
    body = {"messages": [message_body()], "mode": False}

    response = await client.post(BATCH, json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "mode"
    assert error["message"].endswith("got false")
