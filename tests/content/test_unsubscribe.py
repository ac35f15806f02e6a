"""One-click unsubscribe: List-Unsubscribe fields and the /u/{token} endpoint."""

from __future__ import annotations

import html.parser
import re
import urllib.parse
from email import policy
from email.parser import BytesParser

import attrs
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.errors import NotFoundError, ValidationError
from tests.content.conftest import PUBLIC_URL, message_body
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def unsubscribe_url(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> str:
    """Send a message with list_unsubscribe and return its link as received."""
    response = await client.post(
        "/v1/messages", json=message_body(list_unsubscribe=True)
    )
    assert response.status_code == 202
    await engine.deliver_due()
    [received] = smtp_server.wait_for_messages(1)
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.fullmatch(r"<(https://\S+)>", str(parsed["List-Unsubscribe"]))
    assert match is not None
    return match.group(1)


async def test_headers_point_at_public_url(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)

    assert url.startswith(f"{PUBLIC_URL}/u/msg_")


async def test_one_click_post_suppresses(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)

    response = await client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={
            "Authorization": "",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    entry = await engine.get_suppression("ada@example.test")
    assert response.status_code == 200
    assert str(entry.reason) == "user_unsubscribed"


async def test_one_click_post_fires_event(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)
    message_id = url.rsplit("/", 1)[1].split(".")[0]

    await client.post(url, content=b"List-Unsubscribe=One-Click")

    response = await client.get("/v1/events", params={"type": "recipient.unsubscribed"})
    [event] = response.json()["data"]
    assert event["message_id"] == message_id
    assert event["recipient"] == "ada@example.test"


async def test_get_does_not_unsubscribe(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)

    response = await client.get(url)

    assert response.status_code == 200
    assert 'method="post"' in response.text
    with pytest.raises(NotFoundError):
        await engine.get_suppression("ada@example.test")


@pytest.mark.parametrize(
    "forge",
    [
        lambda url: url[:-2] + ("AA" if not url.endswith("AA") else "BB"),
        lambda url: url.rsplit(".", 1)[0],
        lambda url: url.replace("/u/msg_", "/u/msg_0"),
    ],
)
async def test_forged_token_not_found(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer, forge: object
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)

    response = await client.post(forge(url))  # type: ignore[operator]

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unsubscribe_link_not_found"
    with pytest.raises(NotFoundError):
        await engine.get_suppression("ada@example.test")


async def test_own_list_unsubscribe_conflicts(client: httpx.AsyncClient) -> None:
    body = message_body(
        list_unsubscribe=True,
        headers={"List-Unsubscribe": "<mailto:unsubscribe@acme.example>"},
    )

    response = await client.post("/v1/messages", json=body)

    [error] = response.json()["error"]["errors"]
    assert error["code"] == "conflicting_header"


async def test_without_public_url_rejected(
    settings: Settings, clock: ManualClock
) -> None:
    private = attrs.evolve(settings, public_url=None)
    async with Engine.from_settings(private, clock=clock, workers=False) as engine:
        with pytest.raises(ValidationError) as raised:
            await engine.send(message_body(list_unsubscribe=True))

    assert raised.value.errors[0].code == "unsubscribe_unavailable"


async def test_without_flag_no_headers(engine: Engine, smtp_server: SmtpServer) -> None:
    await engine.send(message_body())
    await engine.deliver_due()

    [received] = smtp_server.wait_for_messages(1)
    assert b"List-Unsubscribe" not in received.data


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", None),
        (b"", "application/x-www-form-urlencoded"),
        (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded"),
        (b"list-unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        (b"List-Unsubscribe=One-Click", "text/plain"),
        (b'{"List-Unsubscribe": "One-Click"}', "application/json"),
    ],
)
async def test_post_without_one_click_field_rejected(
    client: httpx.AsyncClient,
    engine: Engine,
    smtp_server: SmtpServer,
    content: bytes,
    content_type: str | None,
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)
    headers = {"Authorization": ""}
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = await client.post(url, content=content, headers=headers)

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "invalid_body"
    assert "List-Unsubscribe=One-Click" in error["message"]
    assert error["errors"][0]["field"] == "List-Unsubscribe"
    with pytest.raises(NotFoundError):
        await engine.get_suppression("ada@example.test")


async def test_multipart_one_click_suppresses(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)

    response = await client.post(
        url,
        files={"List-Unsubscribe": (None, "One-Click")},
        headers={"Authorization": ""},
    )

    entry = await engine.get_suppression("ada@example.test")
    assert response.status_code == 200
    assert str(entry.reason) == "user_unsubscribed"


class FormReader(html.parser.HTMLParser):
    """Collects what a browser submits from a page's one form."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str | None] = {}
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.form = values
        elif tag in ("input", "button") and values.get("name"):
            self.fields.append((values["name"] or "", values.get("value") or ""))


async def test_page_form_unsubscribes(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    url = await unsubscribe_url(client, engine, smtp_server)
    page = await client.get(url, headers={"Authorization": ""})
    reader = FormReader()
    reader.feed(page.text)

    response = await client.post(
        url,
        content=urllib.parse.urlencode(reader.fields).encode(),
        headers={
            "Authorization": "",
            "Content-Type": reader.form.get("enctype") or "",
        },
    )

    entry = await engine.get_suppression("ada@example.test")
    assert reader.form.get("method") == "post"
    assert response.status_code == 200
    assert str(entry.reason) == "user_unsubscribed"
