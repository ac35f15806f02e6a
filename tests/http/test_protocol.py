"""The guards of ``sendarix serve``'s HTTP protocol on a real socket: the
request head deadline and size limit, upgrade requests and trailers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from sendarix_http.limits import MAX_HEADER_BLOCK_BYTES
from sendarix_http.protocol import GuardedHttpProtocol

pytestmark = pytest.mark.anyio

HEAD_TIMEOUT = 0.5


class ShortDeadline(GuardedHttpProtocol):
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


async def answer_before_body(scope: Scope, receive: Receive, send: Send) -> None:
    """Send a 429 without reading the body, as the rate limit does."""
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(keep_alive: float, app: ASGIApp = echo_length) -> AsyncIterator[int]:
    """Run ``app`` on a free port and yield the port.

    ``keep_alive`` is uvicorn's keep-alive timeout in seconds.
    """
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http=ShortDeadline,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=keep_alive,
        # A test that fails with a connection still open must not hang
        # the shutdown that follows.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    await task


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serving(keep_alive=30) as server_port:
        yield server_port


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


async def test_half_closed_client_gets_response(port: int) -> None:
    # The client's FIN right after the request makes the server's transport
    # close itself, and the response written after that must still be sent.
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.write_eof()
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()

        assert response.startswith(b"HTTP/1.1 200")
        assert response.endswith(b"\r\n\r\n0")


async def test_large_head_in_pieces_gets_json_422(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    # One header line that never ends, in pieces of 4 KiB, until just past
    # the limit. Writing more after the server has closed could reset the
    # connection before its response is read.
    chunk = b"a" * 4096
    for _ in range(MAX_HEADER_BLOCK_BYTES // len(chunk) + 1):
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)

    response = await asyncio.wait_for(reader.read(), 5)

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 422 ")
    assert b"connection: close" in head
    assert b"x-request-id: req_" in head
    error = orjson.loads(body)["error"]
    assert error["code"] == "validation_failed"
    assert error["errors"][0]["field"] == "http_headers"
    assert error["errors"][0]["code"] == "too_long"
    assert str(MAX_HEADER_BLOCK_BYTES) in error["errors"][0]["message"]
    writer.close()


async def test_head_within_limit_in_pieces_ok(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    value = b"a" * (MAX_HEADER_BLOCK_BYTES - 1024)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + value + b"\r\n"
    request += b"Content-Length: 2\r\n\r\nok"
    for start in range(0, len(request), 4096):
        writer.write(request[start : start + 4096])
        await writer.drain()
        await asyncio.sleep(0.01)

    response = await read_response(reader)

    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n2")
    writer.close()


async def test_large_body_is_not_a_large_head(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = MAX_HEADER_BLOCK_BYTES * 4
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    for _ in range(4):
        writer.write(b"b" * MAX_HEADER_BLOCK_BYTES)
        await writer.drain()

    response = await read_response(reader)

    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n%d" % size)
    writer.close()


async def test_limit_per_request_on_kept_alive(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Two heads of about three quarters of the limit each: together over
    # it, each one within it.
    value = b"a" * (MAX_HEADER_BLOCK_BYTES * 3 // 4)
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + value + b"\r\n\r\n"
    responses = []
    for _ in range(2):
        for start in range(0, len(request), 4096):
            writer.write(request[start : start + 4096])
            await writer.drain()
        responses.append(await read_response(reader))

    assert [r[:12] for r in responses] == [b"HTTP/1.1 200"] * 2
    writer.close()


async def test_blank_lines_between_requests_get_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await read_response(reader)
    # llhttp skips empty lines before a request line without starting a
    # request, but each one stops uvicorn's keep-alive timer.
    for _ in range(3):
        writer.write(b"\r\n")
        await asyncio.sleep(HEAD_TIMEOUT / 5)

    response = await asyncio.wait_for(reader.read(), 5)

    assert first.startswith(b"HTTP/1.1 200")
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    writer.close()


async def test_upgrade_request_body_is_not_a_request(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    inner = b"GET /inner HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: %d\r\n\r\n" % len(inner)
    )
    await writer.drain()
    # The body in a read of its own, where llhttp would parse it as the
    # next request.
    await asyncio.sleep(0.1)
    writer.write(inner)

    response = await asyncio.wait_for(reader.read(), 5)

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Upgrade" in response
    assert response.count(b"HTTP/1.1 ") == 1
    writer.close()


async def test_upgrade_request_without_body_closes(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # uvicorn drops the bytes after an upgrade request's head in the same
    # read, so the pipelined request gets no response.
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
    )
    writer.write(request + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    response = await asyncio.wait_for(reader.read(), 5)

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head
    assert body == b"0"
    writer.close()


async def test_pipelined_slow_head_gets_408() -> None:
    # uvicorn's keep-alive timer, shorter than the head deadline here,
    # starts when the first response is complete.
    async with serving(keep_alive=HEAD_TIMEOUT / 5) as server_port:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n")

        first = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()

    assert first.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_large_trailer_closes_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trailer: "
    )
    # One trailer field that never ends, until the server closes the
    # connection. The limit counts from the read after the body data, so
    # it takes up to two pieces past it.
    chunk = b"a" * 4096
    closed = False
    for _ in range(MAX_HEADER_BLOCK_BYTES // len(chunk) + 3):
        try:
            writer.write(chunk)
            await writer.drain()
        except ConnectionResetError:
            closed = True
            break
        await asyncio.sleep(0.01)
    if not closed:
        try:
            closed = await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            closed = True

    assert closed
    writer.close()


async def test_trailer_within_limit_ok(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trailer: "
    )
    chunk = b"a" * 4096
    for _ in range(MAX_HEADER_BLOCK_BYTES // len(chunk) - 1):
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(b"\r\n\r\n")

    response = await read_response(reader)

    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n2")
    writer.close()


@pytest.fixture
async def answering_port() -> AsyncIterator[int]:
    async with serving(keep_alive=0.3, app=answer_before_body) as server_port:
        yield server_port


async def post_head(
    port: int, length: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Send a POST head declaring ``length`` body bytes; return the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
    return reader, writer, await read_response(reader)


async def test_body_after_answer_keeps_idle_timeout(answering_port: int) -> None:
    reader, writer, response = await post_head(answering_port, 4)
    writer.write(b"abcd")

    closed = await asyncio.wait_for(reader.read(), 5)

    assert response.startswith(b"HTTP/1.1 429")
    assert closed == b""
    writer.close()


async def test_trickled_body_after_answer_closed(answering_port: int) -> None:
    reader, writer, response = await post_head(answering_port, 100)

    async def trickle() -> None:
        # A byte well within each keep-alive period, for longer than the
        # test waits.
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"a")
                await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    closed = await asyncio.wait_for(reader.read(), 5)
    trickling.cancel()

    assert response.startswith(b"HTTP/1.1 429")
    assert closed == b""
    writer.close()


async def test_request_after_answered_body_served(answering_port: int) -> None:
    reader, writer, first = await post_head(answering_port, 4)
    # The rest of the body and the next request in one read.
    writer.write(b"abcdGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    second = await read_response(reader)

    assert first.startswith(b"HTTP/1.1 429")
    assert second.startswith(b"HTTP/1.1 429")
    writer.close()
