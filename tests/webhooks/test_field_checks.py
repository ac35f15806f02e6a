"""``/v1/webhooks`` checks of ``events`` and ``description``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sendarix_backends.engine import Engine
from tests.webhooks.conftest import api_client

pytestmark = pytest.mark.anyio

# Port 9 (discard) on loopback: nothing is posted in these tests.
URL = "http://127.0.0.1:9/"


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(engine) as opened:
        yield opened


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["error"]["errors"]
    assert len(errors) == 1, errors
    return errors[0]


async def create(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/webhooks", json={"url": URL})
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


async def test_create_empty_events_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/webhooks", json={"url": URL, "events": []})

    error = only_error(response)
    assert error["field"] == "events"
    assert error["code"] == "empty_list"
    assert "leave events out" in error["message"]
    assert "message.delivered" in error["message"]
    assert (await client.get("/v1/webhooks")).json()["data"] == []


async def test_update_empty_events_rejected(client: httpx.AsyncClient) -> None:
    endpoint_id = await create(client)

    response = await client.patch(f"/v1/webhooks/{endpoint_id}", json={"events": []})

    assert only_error(response)["code"] == "empty_list"
    endpoint = (await client.get(f"/v1/webhooks/{endpoint_id}")).json()
    assert endpoint["events"] is None


async def test_create_long_description_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/webhooks", json={"url": URL, "description": "x" * 2_000_000}
    )

    error = only_error(response)
    assert error["field"] == "description"
    assert error["code"] == "too_long"
    assert "2000000 characters" in error["message"]
    assert "the maximum is 500" in error["message"]
    assert len(error["message"]) < 300


async def test_update_long_description_rejected(client: httpx.AsyncClient) -> None:
    endpoint_id = await create(client)

    response = await client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"description": "x" * 501}
    )

    assert only_error(response)["code"] == "too_long"


async def test_description_at_limit_accepted(client: httpx.AsyncClient) -> None:
    endpoint_id = await create(client)

    response = await client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"description": "x" * 500}
    )

    assert response.status_code == 200, response.text
    assert response.json()["description"] == "x" * 500


async def test_update_schema_allows_null_description(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/v1/openapi.json")).json()

    schema = document["components"]["schemas"]["WebhookUpdate"]
    description = schema["properties"]["description"]
    assert description["type"] == ["string", "null"]
    assert description["maxLength"] == 500
    assert schema["properties"]["events"]["minItems"] == 1


def error_fields(response: httpx.Response) -> dict[str, str]:
    """Return the code of each invalid field of a 422 response."""
    assert response.status_code == 422, response.text
    return {e["field"]: e["code"] for e in response.json()["error"]["errors"]}


async def test_create_lists_every_invalid_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/webhooks", json={"url": "ftp://x", "events": [], "description": 5}
    )

    assert error_fields(response) == {
        "url": "invalid_url",
        "events": "empty_list",
        "description": "invalid_type",
    }


async def test_create_names_each_bad_event(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={"url": URL, "events": ["message.delivered", "nope", 5]},
    )

    assert error_fields(response) == {
        "events.1": "invalid_event_type",
        "events.2": "invalid_type",
    }


async def test_create_unknown_and_invalid_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={"url": "http://169.254.169.254/", "description": 5, "secret": "x"},
    )

    assert error_fields(response) == {
        "secret": "unknown_field",
        "url": "invalid_url",
        "description": "invalid_type",
    }


async def test_update_lists_every_invalid_field(client: httpx.AsyncClient) -> None:
    endpoint_id = await create(client)

    response = await client.patch(
        f"/v1/webhooks/{endpoint_id}",
        json={
            "url": "ftp://x",
            "events": ["nope"],
            "description": "x" * 501,
            "enabled": "yes",
        },
    )
    nulls = await client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"url": None, "enabled": None}
    )

    assert error_fields(response) == {
        "url": "invalid_url",
        "events.0": "invalid_event_type",
        "description": "too_long",
        "enabled": "invalid_type",
    }
    assert error_fields(nulls) == {"url": "invalid_type", "enabled": "invalid_type"}
