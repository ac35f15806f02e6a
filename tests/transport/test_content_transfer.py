"""Sending large content: the reply timeout starts once the content is out,
and content cut off by a stalled server never reaches its final dot."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sendarix_backends.smtp import SmarthostTransport
from sendarix_core.errors import PermanentDeliveryError, TemporaryDeliveryError
from sendarix_core.ports import Envelope
from tests.support.scripted_smtp import ScriptedServer, Session

pytestmark = pytest.mark.anyio

# Larger than what the kernel buffers between the two sockets below, so
# most of it waits in the client's transport while the server reads.
CONTENT_BYTES = 8 * 1024 * 1024
CHUNK = 64 * 1024
TIMEOUT = 0.3


def big_envelope() -> Envelope:
    line = b"x" * 76 + b"\r\n"
    body = line * (CONTENT_BYTES // len(line))
    data = b"Subject: large\r\nMessage-ID: <big@sender.example.test>\r\n\r\n" + body
    return Envelope(
        message_id="msg-big",
        mail_from="bounces@sender.example.test",
        rcpt_to="ada@example.test",
        data=data,
    )


async def start_content(session: Session) -> None:
    sock = session.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)
    await session.read_lines(3)
    await session.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go")


async def read_slowly(session: Session, pause: float) -> bytes:
    """Read the content in chunks with a pause between them; return it."""
    received = bytearray()
    while not received.endswith(b"\r\n.\r\n"):
        chunk = await session.reader.read(CHUNK)
        if not chunk:
            raise ConnectionError("the client closed before the final dot")
        received += chunk
        await asyncio.sleep(pause)
    return bytes(received)


async def read_rest(session: Session) -> str:
    """Read what is left of the content; tell whether its final dot came."""
    try:
        await read_slowly(session, pause=0)
    except (ConnectionError, OSError):
        return "cut off"
    return "final dot received"


async def deliver(port: int) -> None:
    transport = SmarthostTransport(
        "127.0.0.1", port, helo_name="sender.example.test", timeout=TIMEOUT, tls="none"
    )
    try:
        await transport.deliver(big_envelope())
    finally:
        await transport.aclose()


async def test_slow_transfer_not_timed_out() -> None:
    copies: list[bytes] = []

    async def script(session: Session) -> None:
        await start_content(session)
        # About 6 MB/s: the transfer takes longer than the reply timeout,
        # but no pause between chunks comes near it.
        copies.append(await read_slowly(session, pause=0.01))
        await session.reply("250 2.0.0 queued")

    async with ScriptedServer(script, size_limit=2 * CONTENT_BYTES) as server:
        await deliver(server.port)

    assert len(copies) == 1
    assert len(copies[0]) > CONTENT_BYTES


async def test_stalled_transfer_never_ends_content() -> None:
    outcome: list[str] = []

    async def script(session: Session) -> None:
        await start_content(session)
        await session.reader.read(CHUNK)
        await asyncio.sleep(TIMEOUT * 5)
        outcome.append(await read_rest(session))

    async with ScriptedServer(script, size_limit=2 * CONTENT_BYTES) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port)
        await asyncio.sleep(TIMEOUT * 6)

    assert outcome == ["cut off"]
    assert "no data was sent" in str(caught.value)


async def test_refusal_before_end_of_content() -> None:
    outcome: list[str] = []

    async def script(session: Session) -> None:
        await start_content(session)
        await session.reader.read(CHUNK)
        await session.reply("552 5.3.4 message too big for this mailbox")
        await asyncio.sleep(TIMEOUT)
        outcome.append(await read_rest(session))

    async with ScriptedServer(script, size_limit=2 * CONTENT_BYTES) as server:
        with pytest.raises(PermanentDeliveryError) as caught:
            await deliver(server.port)
        await asyncio.sleep(TIMEOUT * 2)

    assert caught.value.reply_code == 552
    assert outcome == ["cut off"]
