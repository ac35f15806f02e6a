"""Templates that would fail every render are rejected when saved."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.content.conftest import message_body

pytestmark = pytest.mark.anyio

SAVE_ERRORS = [
    ({"subject": "{{ a }}\n", "text": "x"}, "subject", "header_injection", "U+000A"),
    # Jinja reads a CR in the text as a line end, LF.
    ({"subject": "Hi\r{{ a }}", "text": "x"}, "subject", "header_injection", "U+000A"),
    (
        {"subject": "{% if a %}\nHi{% endif %}", "text": "x"},
        "subject",
        "header_injection",
        "one line",
    ),
    ({"text": "{{ x.__class__ }}"}, "text", "template_not_allowed", "'__class__'"),
    ({"html": "{{ x['__dict__'] }}"}, "html", "template_not_allowed", "'__dict__'"),
    (
        {"subject": "{{ x.__init__ }}", "text": "x"},
        "subject",
        "template_not_allowed",
        "'__init__'",
    ),
    (
        {"text": '{{ "a" * 100000000 }}'},
        "text",
        "template_not_allowed",
        "repeat it fewer times",
    ),
    (
        {"text": "{{ 100000000 * 'ab' }}"},
        "text",
        "template_not_allowed",
        "repeat it fewer times",
    ),
    ({"text": "{{ 2 ** 100000 }}"}, "text", "template_not_allowed", "exponent"),
    (
        {"text": "{% if a %}" * 100 + "x" + "{% endif %}" * 100},
        "text",
        "template_too_deep",
        "fewer levels",
    ),
    (
        {"html": "{% for x in a %}" * 21 + "x" + "{% endfor %}" * 21},
        "html",
        "template_too_deep",
        "fewer levels",
    ),
    (
        {"subject": "{{ " + "(" * 150 + "a" + ")" * 150 + " }}", "text": "x"},
        "subject",
        "template_too_deep",
        "fewer levels",
    ),
]


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["error"]["errors"]
    return errors


@pytest.mark.parametrize(("parts", "field", "code", "advice"), SAVE_ERRORS)
async def test_create_rejects_broken_template(
    client: httpx.AsyncClient,
    parts: dict[str, str],
    field: str,
    code: str,
    advice: str,
) -> None:
    response = await client.post("/v1/templates", json={"name": "t", **parts})

    [error] = errors_of(response)
    assert error["field"] == field
    assert error["code"] == code
    assert advice in error["message"]
    assert (await client.get("/v1/templates/t")).status_code == 404


@pytest.mark.parametrize(("parts", "field", "code", "advice"), SAVE_ERRORS)
async def test_update_rejects_broken_template(
    client: httpx.AsyncClient,
    parts: dict[str, str],
    field: str,
    code: str,
    advice: str,
) -> None:
    created = await client.post(
        "/v1/templates", json={"name": "t", "subject": "Hi", "text": "Hello"}
    )
    assert created.status_code == 201, created.text

    response = await client.patch("/v1/templates/t", json=parts)

    [error] = errors_of(response)
    assert error["field"] == field
    assert error["code"] == code
    assert advice in error["message"]
    template = (await client.get("/v1/templates/t")).json()
    assert template["latest_version"] == 1


async def test_nested_internal_names_each_reported(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/templates",
        json={"name": "t", "text": "{{ x.__class__.__mro__ }}"},
    )

    errors = errors_of(response)
    messages = " ".join(error["message"] for error in errors)
    assert len(errors) == 2
    assert "'__class__'" in messages
    assert "'__mro__'" in messages
    assert all(error["message"].startswith("line 1: ") for error in errors)


async def test_underscore_key_still_renders(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/templates",
        json={"name": "t", "subject": "Order {{ order._id }}", "text": "x"},
    )
    assert created.status_code == 201, created.text

    response = await client.post(
        "/v1/templates/t/render", json={"template_data": {"order": {"_id": 7}}}
    )

    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "Order 7"


async def test_data_dependent_error_fails_send(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/templates", json={"name": "t", "subject": "Hi", "text": "{{ x[key] }}"}
    )
    assert created.status_code == 201, created.text

    body = message_body(template="t", template_data={"x": "a", "key": "__class__"})
    del body["subject"], body["text"]

    response = await client.post("/v1/messages", json=body)

    [error] = errors_of(response)
    assert error["code"] == "template_not_allowed"


async def test_large_exponent_of_variable_rejected(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/templates", json={"name": "t", "text": "{{ x ** 100 }}"}
    )

    [error] = errors_of(response)
    assert error["field"] == "text"
    assert error["code"] == "template_not_allowed"
    assert "100" in error["message"]


async def test_subject_trimmed_by_whitespace_control(
    client: httpx.AsyncClient,
) -> None:
    subject = "{%- if vip -%}\n VIP offer\n{%- else -%}\n Offer\n{%- endif -%}"

    created = await client.post(
        "/v1/templates", json={"name": "t", "subject": subject, "text": "x"}
    )
    rendered = await client.post(
        "/v1/templates/t/render", json={"template_data": {"vip": True}}
    )

    assert created.status_code == 201, created.text
    assert rendered.json()["subject"] == "VIP offer"


async def test_data_key_with_leading_underscores(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/templates",
        json={"name": "t", "subject": "s", "text": "{{ order.__typename }}"},
    )
    rendered = await client.post(
        "/v1/templates/t/render",
        json={"template_data": {"order": {"__typename": "Order"}}},
    )

    assert created.status_code == 201, created.text
    assert rendered.json()["text"] == "Order"
