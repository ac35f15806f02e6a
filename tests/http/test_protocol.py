"""The request head deadline of ``sendarix serve``'s HTTP protocol, on a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from sendarix_http.protocol import HeadTimeoutProtocol

pytestmark = pytest.mark.anyio

HEAD_TIMEOUT = 0.5


class ShortDeadline(HeadTimeoutProtocol):
    head_timeout = HEAD_TIMEOUT


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        echo_length,
        http=ShortDeadline,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    await task


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def test_slow_head_gets_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # Bytes keep arriving, but the head never completes.
    for _ in range(2):
        await asyncio.sleep(HEAD_TIMEOUT / 3)
        writer.write(b"X")

    response = await asyncio.wait_for(reader.read(), 5)

    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in response
    writer.close()


async def test_silent_connection_gets_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    response = await asyncio.wait_for(reader.read(), 5)

    assert response.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_kept_alive_connection_outlives_deadline(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await read_response(reader)
    # Idle for longer than the head deadline: only keep-alive applies here.
    await asyncio.sleep(HEAD_TIMEOUT * 3)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    second = await read_response(reader)

    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_slow_body_is_not_cut(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    await asyncio.sleep(HEAD_TIMEOUT * 3)
    writer.write(b"cd")

    response = await read_response(reader)

    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n4")
    writer.close()


async def test_pipelined_requests_answered(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    first = await read_response(reader)
    await asyncio.sleep(HEAD_TIMEOUT * 3)
    second = await read_response(reader)

    assert first.startswith(b"HTTP/1.1 200")
    assert second.startswith(b"HTTP/1.1 200")
    writer.close()
