"""Pipelined transactions (RFC 2920) against a scripted server, and the
quoting and content encoding the transaction does in place of aiosmtplib's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from sendarix_backends.smtp import SmarthostTransport
from sendarix_backends.smtp.fence import CONTENT_CHECK
from sendarix_backends.smtp.transaction import _message_content, _quote
from sendarix_core.errors import PermanentDeliveryError, TemporaryDeliveryError
from sendarix_core.model import SmtpReply
from tests.support.scripted_smtp import ScriptedServer, Session
from tests.transport.conftest import make_envelope

pytestmark = pytest.mark.anyio

Deliver = Callable[..., Awaitable[SmtpReply]]

MAIL = b"MAIL FROM:<bounces@sender.example.test> SIZE=122"
RCPT = b"RCPT TO:<ada@example.test>"


@pytest.fixture
async def deliver() -> AsyncIterator[Deliver]:
    transports: list[SmarthostTransport] = []

    async def deliver_to(port: int, timeout: float = 2.0) -> SmtpReply:
        transport = SmarthostTransport(
            "127.0.0.1",
            port,
            helo_name="sender.example.test",
            timeout=timeout,
            tls="none",
        )
        transports.append(transport)
        return await transport.deliver(make_envelope())

    yield deliver_to
    for transport in transports:
        await transport.aclose()


async def test_commands_sent_together(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        # Nothing is answered before all three commands are in.
        await session.read_lines(3)
        await session.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go", bytewise=True)
        await session.read_content()
        await session.reply("250 2.0.0 queued as 17", bytewise=True)

    async with ScriptedServer(script) as server:
        reply = await deliver(server.port)

    assert reply.code == 250
    assert reply.text == "2.0.0 queued as 17"
    assert server.sessions[0].lines[1:] == [MAIL, RCPT, b"DATA", b"<content>"]


@pytest.mark.parametrize("code", [200, 251, 299])
async def test_any_positive_reply_to_content_accepts(
    deliver: Deliver, code: int
) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go")
        await session.read_content()
        await session.reply(f"{code} 2.0.0 queued")

    async with ScriptedServer(script) as server:
        reply = await deliver(server.port)

    assert reply.code == code
    assert reply.text == "2.0.0 queued"


async def test_failed_content_check_drops_session(deliver: Deliver) -> None:
    ended = asyncio.Event()

    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go")
        # The client sends no content and no command: it hangs up.
        assert await session.reader.read() == b""
        ended.set()

    def lease_lost() -> None:
        raise TemporaryDeliveryError("lease lost", enhanced_code="4.3.0")

    token = CONTENT_CHECK.set(lease_lost)
    try:
        async with ScriptedServer(script) as server:
            with pytest.raises(TemporaryDeliveryError, match="lease lost"):
                await deliver(server.port)
            await asyncio.wait_for(ended.wait(), 5)
    finally:
        CONTENT_CHECK.reset(token)

    assert b"<content>" not in server.sessions[0].lines


async def test_multiline_replies_in_one_packet(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250-2.1.0 sender", "250 2.1.0 ok", "250 ok", "354 go")
        await session.read_content()
        await session.reply("250-2.0.0 queued", "250 2.0.0 as 18")

    async with ScriptedServer(script) as server:
        reply = await deliver(server.port)

    assert reply.text == "2.0.0 queued\n2.0.0 as 18"


async def test_recipient_refused_but_data_accepted(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 ok", "550 5.1.1 no such user", "354 go")
        # RFC 2920: the client ends the empty message with a lone dot.
        await session.read_lines(1)
        await session.reply("554 5.5.1 no valid recipients")
        await session.read_lines(1)
        await session.reply("250 2.0.0 reset")

    async with ScriptedServer(script) as server:
        with pytest.raises(PermanentDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code == "5.1.1"
    assert caught.value.details["stage"] == "RCPT"
    assert server.sessions[0].lines[-2:] == [b".", b"RSET"]


async def test_sender_refused_in_pipeline(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("451 4.3.0 try later", "503 5.5.1 no MAIL", "503 no RCPT")
        await session.read_lines(1)
        await session.reply("250 2.0.0 reset")

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.reply_code == 451
    assert caught.value.details["stage"] == "MAIL"
    assert server.sessions[0].lines[-1] == b"RSET"


async def test_data_refused_in_pipeline(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 ok", "250 ok", "554 5.7.1 not from you")
        await session.read_lines(1)
        await session.reply("250 2.0.0 reset")

    async with ScriptedServer(script) as server:
        with pytest.raises(PermanentDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.reply_code == 554
    assert caught.value.details["stage"] == "DATA"
    assert b"<content>" not in server.sessions[0].lines


async def test_session_lost_after_mail_reply(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 ok")
        session.writer.close()

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.details["stage"] == "RCPT"
    assert b"<content>" not in server.sessions[0].lines


async def test_silent_server_times_out(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port, timeout=0.5)

    assert caught.value.details["stage"] == "MAIL"
    assert "Timed out" in str(caught.value)


async def test_trickled_reply_times_out(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        # Each byte comes well within the timeout, the whole reply does not.
        for byte in b"250 2.1.0 ok\r\n250 ok\r\n354 go\r\n":
            if session.reader.at_eof():
                return
            session.writer.write(bytes([byte]))
            await session.writer.drain()
            await asyncio.sleep(0.1)

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port, timeout=0.5)

    assert caught.value.details["stage"] == "MAIL"
    assert "Timed out" in str(caught.value)
    assert b"<content>" not in server.sessions[0].lines


async def test_malformed_reply_closes_session(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        await session.reply("250 ok", "what?", "354 go")

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.reply_code == -1
    assert caught.value.details["stage"] == "RCPT"
    assert caught.value.details["unexpected_reply"] is True
    assert b"<content>" not in server.sessions[0].lines


async def test_oversized_multiline_reply_rejected(deliver: Deliver) -> None:
    async def script(session: Session) -> None:
        await session.read_lines(3)
        # Five lines of 8,000 bytes: each line fits, the reply does not.
        lines = ["250-" + "x" * 8000] * 5
        await session.reply(*lines, "250 ok", "250 ok", "354 go")

    async with ScriptedServer(script) as server:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await deliver(server.port)

    assert caught.value.reply_code == -1
    assert caught.value.details["stage"] == "MAIL"
    assert "too long" in str(caught.value)
    assert b"<content>" not in server.sessions[0].lines


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.test",
        "ada.lovelace+tag@mail.example.test",
        "o'brien@example.test",
        "josé@exámple.test",
        '"ada lovelace"@example.test',
        "Ada <ada@example.test>",
        "ada@[192.0.2.1]",
    ],
)
def test_quote_matches_aiosmtplib(address: str) -> None:
    assert _quote(address, "utf-8") == quote_address(address).encode()


def test_quote_random_addresses_match_aiosmtplib() -> None:
    rng = random.Random(3)
    alphabet = "ab.@+-_'\" ()<>[]:;\\,\x00\x7f\r\n\té"
    for _ in range(5000):
        address = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        try:
            expected = quote_address(address).encode()
        except ValueError:
            with pytest.raises(ValueError, match="not permitted"):
                _quote(address, "utf-8")
            continue
        if any(byte < 0x20 or byte == 0x7F for byte in expected):
            # aiosmtplib's execute_command rejects these.
            with pytest.raises(ValueError, match="prohibited"):
                _quote(address, "utf-8")
        else:
            assert _quote(address, "utf-8") == expected, address


def test_quote_keeps_line_breaks_out() -> None:
    quoted = _quote("ada@example.test>\r\nRCPT TO:<eve@evil.test", "utf-8")

    assert quoted == b"<ada@example.test>"


def test_message_content_matches_aiosmtplib() -> None:
    rng = random.Random(5)
    pieces = [b"a", b"b.", b".", b"..", b"\r\n", b"\n", b"\r", b" ", b"\xc3\xa9"]
    cases = [
        b"",
        b".",
        b"Subject: x\r\n\r\n.hidden\r\n",
        b"Subject: x\n\n.a\nb",
        *(
            b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
            for _ in range(2000)
        ),
    ]
    for data in cases:
        expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data))
        assert _message_content(data) == expected + b".\r\n", data
