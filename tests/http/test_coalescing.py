"""The transport under ``sendarix serve``'s HTTP protocol, which sends the
writes of one event loop step together, on a real loopback connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sendarix_http.protocol import _COALESCE_LIMIT, _CoalescingTransport

pytestmark = pytest.mark.anyio


class CountingTransport(asyncio.Transport):
    """Transport wrapper that records each write and passes it to a real one."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[
    tuple[CountingTransport, asyncio.Future[bytes]]
]:
    """Yield a client transport and a future of the bytes the server read."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def collect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            received.set_result(await reader.read())
        except ConnectionResetError:
            received.set_result(b"")
        writer.close()

    server = await asyncio.start_server(collect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await asyncio.get_running_loop().create_connection(
        asyncio.Protocol, "127.0.0.1", port
    )
    try:
        yield CountingTransport(transport), received
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


async def test_same_step_writes_joined() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n")
        assert inner.writes == []
        coalescing.write(b"{}")
        joined = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"
        assert inner.writes == [joined]
        await asyncio.sleep(0)
        assert inner.writes == [joined]
        coalescing.close()
        assert await asyncio.wait_for(received, 5) == joined


async def test_lone_write_sent_next_step() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert inner.writes == []
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        coalescing.close()
        assert await asyncio.wait_for(received, 5) == inner.writes[0]


async def test_later_step_writes_separate() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"first")
        await asyncio.sleep(0)
        coalescing.write(b"second")
        await asyncio.sleep(0)
        assert inner.writes == [b"first", b"second"]
        coalescing.close()
        assert await asyncio.wait_for(received, 5) == b"firstsecond"


async def test_large_write_after_pending() -> None:
    large = b"x" * _COALESCE_LIMIT
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"head")
        coalescing.write(large)
        assert inner.writes == [b"head", large]
        coalescing.close()
        assert await asyncio.wait_for(received, 5) == b"head" + large


async def test_close_sends_pending() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"last response")
        coalescing.close()
        assert await asyncio.wait_for(received, 5) == b"last response"
        assert coalescing.is_closing()


async def test_abort_drops_pending() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.write(b"never sent")
        coalescing.abort()
        await asyncio.sleep(0)
        assert inner.writes == []
        assert await asyncio.wait_for(received, 5) == b""


async def test_write_after_close_dropped() -> None:
    async with connection() as (inner, received):
        coalescing = _CoalescingTransport(inner, asyncio.get_running_loop())
        coalescing.close()
        coalescing.write(b"too late")
        await asyncio.sleep(0)
        assert inner.writes == []
        assert await asyncio.wait_for(received, 5) == b""
