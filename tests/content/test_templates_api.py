"""``/v1/templates`` and sends that name a template, over the real app."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.errors import ValidationError
from tests.content.conftest import message_body
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

OTP = {
    "name": "otp-code",
    "subject": "Your code is {{ code }}",
    "text": "Hi {{ name }}, your code is {{ code }}.",
    "html": "<p>Hi {{ name }}, your code is <b>{{ code }}</b>.</p>",
}


async def create_otp(client: httpx.AsyncClient) -> httpx.Response:
    response = await client.post("/v1/templates", json=OTP)
    assert response.status_code == 201
    return response


async def test_create_publishes_first_version(client: httpx.AsyncClient) -> None:
    body = (await create_otp(client)).json()

    assert body["published_version"] == 1
    assert body["versions"][0]["status"] == "published"
    assert body["subject"] == OTP["subject"]


async def test_create_duplicate_rejected(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.post("/v1/templates", json=OTP)

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["code"] == "already_exists"


async def test_create_syntax_error_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/templates", json={"name": "broken", "text": "{% if x %}"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "text"


async def test_create_oversized_text_one_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/templates", json={"name": "huge", "text": "x" * 5_000_001}
    )

    assert response.status_code == 422
    errors = response.json()["error"]["errors"]
    assert [(error["field"], error["code"]) for error in errors] == [
        ("text", "too_large")
    ]


async def test_create_without_body_part(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/templates", json={"name": "empty", "text": ""})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "missing_body"


async def test_create_include_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/templates", json={"name": "files", "text": "{% include '/etc/passwd' %}"}
    )

    assert response.status_code == 422


async def test_update_creates_draft(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.patch(
        "/v1/templates/otp-code", json={"text": "Code: {{ code }}"}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["latest_version"] == 2
    assert body["published_version"] == 1
    assert [v["status"] for v in body["versions"]] == ["published", "draft"]
    assert body["versions"][1]["html"] == OTP["html"]


async def test_publish_and_roll_back(client: httpx.AsyncClient) -> None:
    await create_otp(client)
    await client.patch("/v1/templates/otp-code", json={"text": "v2 {{ code }}"})

    published = await client.post("/v1/templates/otp-code/publish")
    rolled_back = await client.post(
        "/v1/templates/otp-code/publish", json={"version": 1}
    )

    assert published.json()["published_version"] == 2
    assert rolled_back.json()["published_version"] == 1
    statuses = [v["status"] for v in rolled_back.json()["versions"]]
    assert statuses == ["published", "draft"]


async def test_publish_unknown_version(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.post("/v1/templates/otp-code/publish", json={"version": 9})

    assert response.status_code == 404


@pytest.mark.parametrize("version", [0, -1])
async def test_publish_version_below_one_422(
    client: httpx.AsyncClient, version: int
) -> None:
    await create_otp(client)

    response = await client.post(
        "/v1/templates/otp-code/publish", json={"version": version}
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "version"
    assert error["code"] == "invalid_value"


async def test_render_version_below_one_422(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.post("/v1/templates/otp-code/render", json={"version": 0})

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "version"


async def test_update_without_parts_names_body(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.patch("/v1/templates/otp-code", json={})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == ""
    assert error["code"] == "missing_field"
    assert "subject, html and text" in error["message"]


async def test_nul_in_subject_named(engine: Engine) -> None:
    body = {"name": "nul", "subject": "Code\x00", "text": "x"}

    with pytest.raises(ValidationError) as raised:
        await engine.content.templates.create(body)

    [error] = raised.value.errors
    assert error.field == "subject"
    assert error.code == "invalid_character"
    assert "NUL character U+0000" in error.message
    assert "line break" not in error.message


async def test_nul_rendered_into_subject_named(engine: Engine) -> None:
    body = {"name": "otp", "subject": "Code {{ code }}", "text": "x"}
    await engine.content.templates.create(body)

    with pytest.raises(ValidationError) as raised:
        await engine.content.templates.preview(
            "otp", {"template_data": {"code": "1\x002"}}
        )

    [error] = raised.value.errors
    assert "NUL character U+0000" in error.message
    assert "line break" not in error.message


async def test_list_pages(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await client.post("/v1/templates", json={"name": name, "text": "x"})

    first = (await client.get("/v1/templates", params={"limit": 2})).json()
    cursor = first["next_cursor"]
    second = (await client.get("/v1/templates", params={"cursor": cursor})).json()

    assert [t["name"] for t in first["data"]] == ["a", "b"]
    assert [t["name"] for t in second["data"]] == ["c"]
    assert second["next_cursor"] is None
    assert "versions" not in first["data"][0]


@pytest.mark.parametrize("cursor", ["", "zzzz-edited", "b"])
async def test_list_invalid_cursor_422(client: httpx.AsyncClient, cursor: str) -> None:
    for name in ("a", "b", "c"):
        await client.post("/v1/templates", json={"name": name, "text": "x"})

    response = await client.get("/v1/templates", params={"cursor": cursor})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "cursor"
    assert error["code"] == "invalid_cursor"


async def test_delete_then_not_found(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    deleted = await client.delete("/v1/templates/otp-code")
    read = await client.get("/v1/templates/otp-code")

    assert deleted.status_code == 204
    assert read.status_code == 404


async def test_render_preview_escapes(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.post(
        "/v1/templates/otp-code/render",
        json={"template_data": {"name": "<Ada>", "code": "847291"}},
    )

    assert response.json() == {
        "subject": "Your code is 847291",
        "html": "<p>Hi &lt;Ada&gt;, your code is <b>847291</b>.</p>",
        "text": "Hi <Ada>, your code is 847291.",
    }


async def test_render_names_missing(client: httpx.AsyncClient) -> None:
    await create_otp(client)

    response = await client.post(
        "/v1/templates/otp-code/render", json={"template_data": {}}
    )

    fields = [error["field"] for error in response.json()["error"]["errors"]]
    assert response.status_code == 422
    assert fields == ["template_data.code", "template_data.name"]


async def test_send_missing_variable_422(client: httpx.AsyncClient) -> None:
    await create_otp(client)
    body = message_body(template="otp-code", template_data={"code": "1"})
    del body["subject"], body["text"]

    response = await client.post("/v1/messages", json=body)

    errors = response.json()["error"]["errors"]
    assert response.status_code == 422
    assert [error["field"] for error in errors] == ["template_data.name"]


async def test_send_unknown_template_422(client: httpx.AsyncClient) -> None:
    body = message_body(template="nope")
    del body["text"]

    response = await client.post("/v1/messages", json=body)

    assert response.json()["error"]["errors"][0]["code"] == "template_not_found"


async def test_send_stores_rendered_content(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    await create_otp(client)
    await client.patch("/v1/templates/otp-code", json={"text": "draft {{ code }}"})
    body = message_body(
        template="otp-code", template_data={"name": "<Ada>", "code": "847291"}
    )
    del body["subject"], body["text"]

    response = await client.post("/v1/messages", json=body)

    message = await engine.get_message(response.json()["message_id"])
    assert message.content.subject == "Your code is 847291"
    assert message.content.text == "Hi <Ada>, your code is 847291."
    assert message.content.html == "<p>Hi &lt;Ada&gt;, your code is <b>847291</b>.</p>"
    assert message.content.template == "otp-code"
    assert message.content.template_version == 1


async def test_request_subject_wins(client: httpx.AsyncClient, engine: Engine) -> None:
    await create_otp(client)
    body = message_body(template="otp-code", template_data={"name": "Ada", "code": "1"})
    del body["text"]

    response = await client.post("/v1/messages", json=body)

    message = await engine.get_message(response.json()["message_id"])
    assert message.content.subject == "Your verification code"


async def test_templated_message_delivered(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    await create_otp(client)
    body = message_body(
        template="otp-code", template_data={"name": "Jörg", "code": "847291"}
    )
    del body["subject"], body["text"]
    await client.post("/v1/messages", json=body)

    await engine.deliver_due()

    [received] = smtp_server.wait_for_messages(1)
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    text = parsed.get_body(preferencelist=("plain",))
    assert parsed["Subject"] == "Your code is 847291"
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == "Hi Jörg, your code is 847291.\n"
