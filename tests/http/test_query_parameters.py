"""Query parameters are checked like body fields, through the real app."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio


async def test_misspelled_filter_rejected(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages", params={"stauts": "bounced"})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "stauts"
    assert error["code"] == "unknown_parameter"
    assert "status" in error["message"]


async def test_repeated_parameter_rejected(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages?limit=1&limit=2")

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "limit"
    assert error["code"] == "repeated_parameter"


async def test_repeated_metadata_filter_rejected(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/events?metadata[x]=2&metadata[x]=1")

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "metadata[x]"
    assert error["code"] == "repeated_parameter"


async def test_metadata_filters_of_two_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/events?metadata[x]=1&metadata[y]=2")

    assert response.status_code == 200


async def test_event_type_may_repeat(client: httpx.AsyncClient) -> None:
    await client.post("/v1/messages", json=message_body())

    response = await client.get("/v1/events?type=message.queued&type=message.delivered")

    assert response.status_code == 200
    assert [event["type"] for event in response.json()["data"]] == ["message.queued"]


async def test_metadata_filter_needs_key(client: httpx.AsyncClient) -> None:
    accepted = await client.get("/v1/events", params={"metadata[user]": "42"})
    rejected = await client.get("/v1/events", params={"metadata": "42"})

    assert accepted.status_code == 200
    assert rejected.status_code == 422
    assert rejected.json()["error"]["errors"][0]["code"] == "unknown_parameter"


async def test_body_endpoint_takes_no_query(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages?dry_run=1", json=message_body())

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "dry_run"
    assert "takes none" in error["message"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/messages?recipient=bob@", "missing_domain"),
        ("/v1/messages?recipient=", "invalid_address"),
        ("/v1/events?recipient=not-an-address", "invalid_address"),
    ],
)
async def test_recipient_filter_checked(
    client: httpx.AsyncClient, path: str, code: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "recipient"
    assert error["code"] == code


async def test_recipient_filter_takes_display_form(client: httpx.AsyncClient) -> None:
    await client.post("/v1/messages", json=message_body())

    response = await client.get(
        "/v1/messages", params={"recipient": "User <USER@example.com>"}
    )

    assert response.status_code == 200
    assert len(response.json()["data"]) == 1
