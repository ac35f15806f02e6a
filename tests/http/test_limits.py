"""Limits at the edge: JSON depth, header fields, attachments, body size."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import anyio
import httpx
import orjson
import pytest

from sendarix_http import http_io
from sendarix_http.limits import (
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADER_FIELD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_JSON_DEPTH,
    contains_escape,
    find_repeated_key,
)
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio


def nested(depth: int) -> object:
    """Return a value that is ``depth`` objects deep."""
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_json_depth_at_limit_ok(client: httpx.AsyncClient) -> None:
    # The body itself and template_data are two levels.
    body = message_body(template_data=nested(MAX_JSON_DEPTH - 2))
    response = await client.post("/v1/messages", json=body)
    [error] = response.json()["error"]["errors"]
    assert error["code"] != "too_deep"


async def test_json_too_deep_422(client: httpx.AsyncClient) -> None:
    body = message_body(metadata=nested(MAX_JSON_DEPTH))

    response = await client.post("/v1/messages", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "too_deep"
    assert error["field"].startswith("metadata.a.a")


async def test_json_deep_list_422(client: httpx.AsyncClient) -> None:
    deep: object = []
    for _ in range(200):
        deep = [deep]
    response = await client.post("/v1/messages/batch", json={"messages": deep})
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["code"] == "too_deep"


async def test_json_past_parser_depth_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        content=b'{"a":' + b"[" * 5000,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "too_deep"
    assert error["field"] == ".".join(["a"] + ["0"] * (MAX_JSON_DEPTH - 1))


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("18446744073709551616", "18446744073709551616"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("9" * 5000, "99999999999999999999…9999999999"),
    ],
)
async def test_integer_past_64_bits_422(
    client: httpx.AsyncClient, number: str, shown: str
) -> None:
    body = json.dumps(message_body()).replace(
        '"recipient":', f'"template_data": {{"n": [1, {number}]}}, "recipient":', 1
    )

    response = await client.post(
        "/v1/messages", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "too_large"
    assert error["field"] == "template_data.n.1"
    assert shown in error["message"]


async def test_integer_past_64_bits_in_large_body_422(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps(message_body(text="x" * 100_000)).replace(
        '"recipient":', '"template_data": {"n": 123456789012345678901234}, "recipient":'
    )

    response = await client.post(
        "/v1/messages", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("template_data.n", "too_large")


async def test_long_digits_in_strings_accepted(client: httpx.AsyncClient) -> None:
    body = message_body(metadata={"order": "12345678901234567890123"})

    response = await client.post("/v1/messages", json=body)

    assert response.status_code == 202


async def test_too_many_header_fields(client: httpx.AsyncClient) -> None:
    headers = {f"X-Extra-{number}": "1" for number in range(MAX_HEADER_FIELDS)}

    response = await client.get("/v1/messages", headers=headers)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "http_headers"
    assert error["code"] == "too_many"


async def test_header_field_too_long(client: httpx.AsyncClient) -> None:
    headers = {"X-Long": "a" * MAX_HEADER_FIELD_BYTES}

    response = await client.get("/v1/messages", headers=headers)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "http_headers.x-long"
    assert error["code"] == "too_long"


async def test_header_block_too_long(client: httpx.AsyncClient) -> None:
    # Each field is within its own limit; together they pass 32 KiB.
    headers = {f"X-Part-{number}": "a" * 8000 for number in range(5)}

    response = await client.get("/v1/messages", headers=headers)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "http_headers"
    assert error["code"] == "too_long"
    assert "the maximum is 32768" in error["message"]


async def test_long_request_line_counts_in_head(
    client: httpx.AsyncClient,
) -> None:
    # The header fields are small, but the query string alone passes 32 KiB.
    response = await client.get(
        "/v1/messages", params={"cursor": "a" * MAX_HEADER_BLOCK_BYTES}
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "http_headers"
    assert error["code"] == "too_long"
    assert "request line" in error["message"]


async def test_too_many_attachments(client: httpx.AsyncClient) -> None:
    attachment = {
        "filename": "a.txt",
        "content_type": "text/plain",
        "content": base64.b64encode(b"a").decode(),
    }
    body = message_body(attachments=[attachment] * 101)

    response = await client.post("/v1/messages", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "attachments"
    assert error["code"] == "too_many"


async def test_declared_length_over_50mb(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "52428801"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_invalid_idempotency_header(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", json=message_body(), headers={"Idempotency-Key": "a" * 256}
    )
    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "Idempotency-Key"
    assert error["code"] == "invalid_idempotency_key"


async def test_stalled_body_times_out(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_io, "BODY_IDLE_TIMEOUT", 0.2)

    async def stalling_body() -> AsyncIterator[bytes]:
        yield b'{"recipient": '
        await anyio.sleep(5)
        yield b'"a@example.com"}'

    response = await client.post(
        "/v1/messages",
        content=stalling_body(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 408
    assert response.headers["connection"] == "close"
    error = response.json()["error"]
    assert error["code"] == "request_timeout"
    assert "after 14 bytes" in error["message"]


async def test_slow_body_within_timeout(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_io, "BODY_IDLE_TIMEOUT", 0.5)
    encoded = json.dumps(message_body()).encode()

    async def slow_body() -> AsyncIterator[bytes]:
        # Longer in all than the timeout, but never a long pause.
        for start in range(0, len(encoded), 5):
            await anyio.sleep(0.05)
            yield encoded[start : start + 5]

    response = await client.post(
        "/v1/messages",
        content=slow_body(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": "x\\u0000"}', True),
        (b'{"a": "x\\\\u0000"}', False),
        (b'{"a": "\\"x\\\\\\u0000"}', True),
        (b'{"a": "plain"}', False),
        (b'{"a": "' + b"\\n" * 100 + b'\\u0000"}', True),
    ],
)
def test_contains_escape(raw: bytes, expected: bool) -> None:
    assert contains_escape(raw, (b"\\u0000",)) is expected


def test_repeated_key_found_past_escaped_colon() -> None:
    raw = b'{"t": "a\\u003ab", "m": {"k": "1", "k": "2"}}'

    assert find_repeated_key(raw, orjson.loads(raw)) == ("m", "k")


def test_escaped_colon_without_repeats() -> None:
    raw = b'{"t": "a\\u003ab", "m": {"k": "1:2"}}'

    assert find_repeated_key(raw, orjson.loads(raw)) is None
