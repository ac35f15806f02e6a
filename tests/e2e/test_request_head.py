"""Request heads over the limit against a real ``sendarix serve`` process."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from sendarix_http.limits import MAX_HEADER_BLOCK_BYTES
from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.e2e


class Served(NamedTuple):
    server: ServerProcess
    key: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    process = ServerProcess(tmp_path, {"SENDARIX_DELIVERY_MODE": "sink"})
    key = process.create_key()
    process.start()
    yield Served(process, key)
    process.stop()


def request_head(server: ServerProcess, key: str, padding: int) -> bytes:
    """Return a request head with ``padding`` bytes in fields of 7,000."""
    fields = "".join(
        f"X-Padding-{number}: {'a' * min(7000, padding - start)}\r\n"
        for number, start in enumerate(range(0, padding, 7000))
    )
    return (
        "POST /v1/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"{fields}"
        "Content-Length: 2\r\n\r\n"
    ).encode()


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return received
        received += data


def read_response(sock: socket.socket) -> bytes:
    """Read one response with a ``content-length``, leaving the connection open.

    Closing the sending side instead would end the connection: asyncio
    closes it when uvicorn's protocol gets the client's end of file, before
    the response is written.
    """
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def split_response(response: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    error: dict[str, Any] = orjson.loads(body)["error"]
    return head, error


def test_head_in_pieces_past_limit_gets_422(served: Served) -> None:
    server, key = served
    head = request_head(server, key, MAX_HEADER_BLOCK_BYTES + 2048)
    # Just past the limit, so the head is never complete. Sending more after
    # the server has responded and closed could reset the connection before
    # the response is read.
    end = MAX_HEADER_BLOCK_BYTES + 512
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        # Pieces of 1 KiB, each a separate read.
        for start in range(0, end, 1024):
            sock.sendall(head[start : min(start + 1024, end)])
            time.sleep(0.002)
        response = read_all(sock)

    head_out, error = split_response(response)
    assert head_out.startswith(b"HTTP/1.1 422 "), response[:200]
    assert b"connection: close" in head_out.lower()
    assert error["code"] == "validation_failed"
    assert error["errors"] == [
        {
            "field": "http_headers",
            "code": "too_long",
            "message": (
                f"the request line and header fields are over "
                f"{MAX_HEADER_BLOCK_BYTES} bytes; send at most "
                f"{MAX_HEADER_BLOCK_BYTES} bytes before the body"
            ),
        }
    ]


def test_head_in_one_piece_past_limit_gets_422(served: Served) -> None:
    server, key = served
    head = request_head(server, key, MAX_HEADER_BLOCK_BYTES)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + b"{}")
        response = read_response(sock)

    head_out, error = split_response(response)
    assert head_out.startswith(b"HTTP/1.1 422 "), response[:200]
    assert b"x-ratelimit-limit" in head_out.lower()
    assert [e["field"] for e in error["errors"]] == ["http_headers"]


def test_head_within_limit_in_pieces_reaches_api(served: Served) -> None:
    server, key = served
    head = request_head(server, key, MAX_HEADER_BLOCK_BYTES // 2)
    request = head + b"{}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for start in range(0, len(request), 1024):
            sock.sendall(request[start : start + 1024])
            time.sleep(0.002)
        response = read_response(sock)

    # The request reaches the API, which validates the empty message.
    head_out, error = split_response(response)
    assert head_out.startswith(b"HTTP/1.1 422 "), response[:200]
    assert error["code"] == "validation_failed"
    assert "http_headers" not in {e["field"] for e in error["errors"]}


def test_long_request_line_gets_422(served: Served) -> None:
    server, key = served
    query = "a" * (MAX_HEADER_BLOCK_BYTES + 1024)
    request = (
        f"GET /v1/messages?cursor={query} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        # One write: the head may reach the application whole, or the HTTP
        # server may see its pieces pass the limit. Both respond with 422.
        sock.sendall(request)
        response = read_response(sock)

    head_out, error = split_response(response)
    assert head_out.startswith(b"HTTP/1.1 422 "), response[:200]
    assert [e["field"] for e in error["errors"]] == ["http_headers"]
    assert [e["code"] for e in error["errors"]] == ["too_long"]
