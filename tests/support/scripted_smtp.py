"""A scripted SMTP server on loopback, for replies aiosmtpd can't send.

It greets, offers PIPELINING, and then runs a test's script for each
connection, so a test can send any bytes at any point of a transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Script", "ScriptedServer", "Session"]

Script = Callable[["Session"], Awaitable[None]]


class Session:
    """One client connection to the scripted server, already past EHLO."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.lines: list[bytes] = []

    async def read_lines(self, count: int) -> list[bytes]:
        lines = []
        for _ in range(count):
            line = (await self.reader.readline()).rstrip(b"\r\n")
            self.lines.append(line)
            lines.append(line)
        return lines

    async def read_content(self) -> bytes:
        content = await self.reader.readuntil(b"\r\n.\r\n")
        self.lines.append(b"<content>")
        return content

    async def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is, such as a reply that is not UTF-8."""
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *replies: str, bytewise: bool = False) -> None:
        data = "".join(f"{reply}\r\n" for reply in replies).encode()
        chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        for chunk in chunks:
            self.writer.write(chunk)
            await self.writer.drain()


class ScriptedServer:
    """A server on loopback that greets, offers PIPELINING, and then runs
    ``script`` for each connection."""

    def __init__(self, script: Script, *, size_limit: int = 10000) -> None:
        self.script = script
        self.size_limit = size_limit
        self.sessions: list[Session] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = Session(reader, writer)
        self.sessions.append(session)
        try:
            await session.reply("220 scripted.test ESMTP")
            await session.read_lines(1)
            await session.reply(
                "250-scripted.test", "250-PIPELINING", f"250 SIZE {self.size_limit}"
            )
            await self.script(session)
            while line := await reader.readline():
                session.lines.append(line.rstrip(b"\r\n"))
                if line.startswith(b"QUIT"):
                    await session.reply("221 2.0.0 bye")
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
