"""The OpenAPI document, its reference page, and errors on every endpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from starlette.routing import Route

from sendarix_backends.engine import Engine
from sendarix_core.keys import Scope
from sendarix_core.validation import FIELDS, validate_send_request
from sendarix_http.app import OPERATIONS, create_app
from sendarix_http.openapi import build_document
from sendarix_http.reference import render_markdown
from tests.core.factories import T0
from tests.http.conftest import key_with_scopes

pytestmark = pytest.mark.anyio

REFERENCE_PAGE = Path(__file__).parents[2] / "docs" / "api-reference.md"
DOCUMENT = build_document(OPERATIONS)


def validator(schema: Mapping[str, Any]) -> Any:
    """Return a validator for ``schema`` that resolves ``#/components/...``."""
    root = {**schema, "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


ERROR_BODY = validator({"$ref": "#/components/schemas/Error"})


def sample_path(path: str) -> str:
    return re.sub(r"{\w+}", "x", path)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert ERROR_BODY.is_valid(body), body
    assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    assert response.headers["x-ratelimit-remaining"]


async def test_document_served_without_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert response.json()["openapi"] == "3.1.0"


async def test_document_matches_router(engine: Engine) -> None:
    app = create_app(engine)
    routed = set()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                # A ":path" converter lets a parameter contain "/"; OpenAPI
                # names the parameter alone.
                path = route.path.replace(":path}", "}")
                routed.add((method.lower(), path))
    documented = {
        (method, path) for path, item in DOCUMENT["paths"].items() for method in item
    }
    assert routed == documented


def test_operation_ids_unique() -> None:
    ids = [operation.operation_id for operation in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_schemas_are_valid() -> None:
    for name, schema in DOCUMENT["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)
        assert validator({"$ref": f"#/components/schemas/{name}"})


def test_examples_match_schemas() -> None:
    checked = 0
    for item in DOCUMENT["paths"].values():
        for described in item.values():
            contents = [
                response.get("content", {}).get("application/json")
                for response in described["responses"].values()
            ]
            body = described.get("requestBody")
            if body is not None:
                contents.append(body["content"]["application/json"])
            for content in contents:
                if content is None or "example" not in content:
                    continue
                errors = list(
                    validator(content["schema"]).iter_errors(content["example"])
                )
                assert errors == [], described["operationId"]
                checked += 1
    assert checked >= 4


def test_send_example_passes_validation() -> None:
    example = DOCUMENT["paths"]["/v1/messages"]["post"]["requestBody"]["content"][
        "application/json"
    ]["example"]
    request = validate_send_request(example, now=T0)
    assert request.recipient.email == "user@example.com"


def test_send_schema_describes_every_field() -> None:
    schema = DOCUMENT["components"]["schemas"]["SendRequest"]
    assert set(schema["properties"]) == FIELDS
    undescribed = [name for name, field in schema["properties"].items() if not field]
    assert undescribed == []


def test_send_schema_rejects_unknown_field() -> None:
    schema = validator({"$ref": "#/components/schemas/SendRequest"})
    body = {"recipient": "a@example.com", "subject": "s", "text": "t"}
    assert schema.is_valid(body)
    assert not schema.is_valid({**body, "to": "b@example.com"})
    assert not schema.is_valid({**body, "subject": "a\r\nBcc: x"})
    assert not schema.is_valid({**body, "tags": ["a b"]})


def test_reference_page_up_to_date() -> None:
    expected = render_markdown(DOCUMENT)
    assert REFERENCE_PAGE.read_text() == expected, (
        "docs/api-reference.md is stale; run "
        "`python -m sendarix_http.reference > docs/api-reference.md`"
    )


async def test_declared_scope_suffices(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    """A key with only the declared scope is never refused for lack of one."""
    for declared in OPERATIONS:
        if declared.scope is None or declared.scope is Scope.ADMIN:
            continue
        secret = await key_with_scopes(engine, declared.scope)
        response = await client.request(
            declared.method,
            sample_path(declared.path),
            json={} if declared.request_schema is not None else None,
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code != 403, (declared.operation_id, response.text)


async def test_every_endpoint_needs_key(client: httpx.AsyncClient) -> None:
    for declared in OPERATIONS:
        response = await client.request(
            declared.method,
            sample_path(declared.path),
            headers={"Authorization": "Bearer sk_live_unknown"},
        )
        if declared.scope is None:
            assert response.status_code != 401, declared.operation_id
        else:
            assert_error(response, 401, "invalid_api_key")


async def test_every_body_rejects_bad_json(client: httpx.AsyncClient) -> None:
    for declared in OPERATIONS:
        if declared.request_schema is None:
            continue
        path = sample_path(declared.path)
        broken = await client.request(
            declared.method,
            path,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        listed = await client.request(declared.method, path, json=[1])
        text = await client.request(
            declared.method,
            path,
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        )
        assert_error(broken, 400, "invalid_json")
        assert_error(listed, 400, "invalid_body")
        assert_error(text, 415, "unsupported_media_type")


async def test_every_error_status_documented(client: httpx.AsyncClient) -> None:
    for declared in OPERATIONS:
        statuses = {str(status) for status in declared.error_statuses()}
        documented = DOCUMENT["paths"][declared.path][declared.method.lower()]
        assert statuses <= set(documented["responses"])


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nowhere"), 404, "route_not_found")
    assert_error(await client.get("/"), 404, "route_not_found")

    response = await client.put("/v1/messages")
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    patched = await client.patch("/v1/api-keys/key_x")
    assert_error(patched, 405, "method_not_allowed")


async def test_crash_has_error_body(
    client: httpx.AsyncClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "list_messages", crash)

    response = await client.get("/v1/messages")

    assert_error(response, 500, "internal_error")
    assert response.headers["x-ratelimit-limit"] == "1000"
    assert "boom" not in response.text
