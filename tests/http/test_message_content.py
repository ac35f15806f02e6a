"""Body text and attachment fields of ``POST /v1/messages`` that mail can't carry."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio


async def only_error(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    return dict(error)


@pytest.mark.parametrize("field", ["text", "html"])
async def test_nul_in_body_rejected(client: httpx.AsyncClient, field: str) -> None:
    body = message_body(**{field: "Your code is\x00 847291."})

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["field"] == field
    assert error["code"] == "invalid_character"
    assert "U+0000 at index 12" in error["message"]


async def test_nul_in_batch_item_rejected(client: httpx.AsyncClient) -> None:
    body = {"messages": [message_body(), message_body(text="a\x00b")]}

    response = await client.post("/v1/messages/batch", json=body)

    fields = [error["field"] for error in response.json()["error"]["errors"]]
    assert response.status_code == 422
    assert fields == ["messages.1.text"]
