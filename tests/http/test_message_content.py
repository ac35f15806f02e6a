"""Body text and attachment fields of ``POST /v1/messages`` that mail can't carry."""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.mime import build_message_bytes
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def attachment(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "filename": "logo.png",
        "content_type": "image/png",
        "content": PNG,
    }
    item.update(fields)
    return item


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


@pytest.mark.parametrize(
    "content_id",
    ["logo", "<logo@acme.example>", "logo@", "@acme", "lo..go@acme", "a@b@c", ""],
)
async def test_content_id_not_msg_id_rejected(
    client: httpx.AsyncClient, content_id: str
) -> None:
    item = attachment(content_id=content_id, inline=True)
    body = message_body(html='<img src="cid:logo">', attachments=[item])

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["field"] == "attachments.0.content_id"
    assert error["code"] == "invalid_content_id"
    assert "local@domain" in error["message"]


async def test_content_id_too_long_rejected(client: httpx.AsyncClient) -> None:
    item = attachment(content_id=f"{'a' * 240}@acme.example", inline=True)
    body = message_body(html="<p>hi</p>", attachments=[item])

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["code"] == "invalid_content_id"


async def test_content_id_becomes_msg_id(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    item = attachment(content_id="logo.v2@acme.example", inline=True)
    body = message_body(html='<img src="cid:logo.v2@acme.example">', attachments=[item])

    response = await client.post("/v1/messages", json=body)
    message_id = response.json()["message_id"]

    assert response.status_code == 202
    message = await engine.store.get_message(message_id)
    assert message is not None
    data = build_message_bytes(message, date=message.created_at)
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    [image] = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo.v2@acme.example>"


@pytest.mark.parametrize("control", ["\u202a", "\u202e", "\u2066", "\u2069"])
async def test_bidi_control_in_filename_rejected(
    client: httpx.AsyncClient, control: str
) -> None:
    item = attachment(filename=f"invoice{control}fdp.exe")

    error = await only_error(
        await client.post("/v1/messages", json=message_body(attachments=[item]))
    )

    assert error["field"] == "attachments.0.filename"
    assert error["code"] == "invalid_character"
    assert f"U+{ord(control):04X} at index 7" in error["message"]


async def test_non_latin_filename_accepted(client: httpx.AsyncClient) -> None:
    item = attachment(filename="فاتورة.pdf", content_type="application/pdf")

    response = await client.post("/v1/messages", json=message_body(attachments=[item]))

    assert response.status_code == 202


async def test_nul_from_template_data_rejected(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    await engine.content.templates.create(
        {"name": "otp", "subject": "Code", "text": "Your code is {{ code }}."}
    )
    body = message_body(template="otp", template_data={"code": "84\x007291"})
    del body["subject"], body["text"]

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["field"] == "template_data.code"
    assert error["code"] == "invalid_character"
    assert "U+0000 at index 2" in error["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("References", "<ü@x.test>"),
        ("In-Reply-To", "<a@x.test> (für dich)"),
        ("List-Unsubscribe", "<https://acme.example/ü>"),
        ("List-Id", "Ünï <list.acme.example>"),
    ],
)
async def test_structured_header_non_ascii_rejected(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    body = message_body(headers={name: value})

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["field"] == f"headers.{name}"
    assert error["code"] == "invalid_character"
    assert error["message"].startswith(repr(value))
    assert f"{name} is a structured header" in error["message"]
    assert "write it in ASCII" in error["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("In-Reply-To", "<" + "a" * 981 + "@x.test>"),
        ("List-Unsubscribe", "<https://x.test/" + "u" * 970 + ">"),
        ("References", "<" + "b" * 978 + "@x.test> <a@x.test>"),
    ],
)
async def test_structured_header_unfoldable_rejected(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    body = message_body(headers={name: value})

    error = await only_error(await client.post("/v1/messages", json=body))

    assert error["field"] == f"headers.{name}"
    assert error["code"] == "too_long"
    assert error["message"].startswith(repr(value[:59] + "…"))
    assert "put spaces between the message ids or URLs" in error["message"]


async def test_structured_header_sent_unencoded(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    references = " ".join(f"<m{index}@mail.example>" for index in range(60))
    # With "In-Reply-To: " the id makes a line of exactly 998 octets.
    in_reply_to = "<" + "a" * 976 + "@x.test>"
    headers = {"References": references[:998], "In-Reply-To": in_reply_to}

    response = await client.post("/v1/messages", json=message_body(headers=headers))

    assert response.status_code == 202, response.text
    message = await engine.store.get_message(response.json()["message_id"])
    assert message is not None
    data = build_message_bytes(message, date=message.created_at)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" not in head
    assert max(len(line) for line in head.split(b"\r\n")) == 998
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert parsed["References"] == references[:998]
    assert parsed["In-Reply-To"] == in_reply_to
