"""The socket ``sendarix serve`` binds for HTTP before uvicorn starts."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sendarix_core.errors import ConfigurationError
from sendarix_http.cli import _listen

pytestmark = pytest.mark.anyio


async def test_accepted_connections_send_without_delay() -> None:
    # Without TCP_NODELAY a keep-alive response written in two parts waits
    # for the client's delayed ACK before its second part goes out.
    listener = _listen("127.0.0.1", 0)
    flags: list[int] = []

    async def accepted(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    async with server:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if flags:
                break
            await asyncio.sleep(0.01)
        writer.close()
    assert flags == [1]


def test_busy_port_is_a_configuration_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"
        ):
            _listen("127.0.0.1", port)
