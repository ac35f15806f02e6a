"""Replies whose bytes are not UTF-8 are stored, and the worker goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import DeliveryMode, Settings
from sendarix_core.clock import ManualClock
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body
from tests.support.scripted_smtp import Script, ScriptedServer, Session

pytestmark = pytest.mark.anyio


async def accept_with_latin1_reply(session: Session) -> None:
    await session.read_lines(3)  # MAIL, RCPT and DATA, pipelined
    await session.reply("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
    await session.read_content()
    await session.send_raw(b"250 2.0.0 queued as caf\xe9\r\n")


async def refuse_with_latin1_reply(session: Session) -> None:
    await session.read_lines(3)
    await session.send_raw(b"250 2.1.0 ok\r\n550 5.1.1 unknown user \xe9\r\n")
    await session.reply("554 5.5.1 no valid recipients")
    await session.read_lines(1)  # RSET
    await session.reply("250 2.0.0 reset")


@asynccontextmanager
async def engine_through(
    settings: Settings, clock: ManualClock, script: Script
) -> AsyncIterator[Engine]:
    """Open an engine whose smarthost is a scripted server running ``script``."""
    async with ScriptedServer(script) as server:
        smarthost = attrs.evolve(
            settings,
            delivery_mode=DeliveryMode.SMARTHOST,
            smarthost=f"smtp://127.0.0.1:{server.port}",
        )
        async with Engine.from_settings(
            smarthost, clock=clock, workers=False
        ) as engine:
            yield engine


async def test_delivered_reply_not_utf8(settings: Settings, clock: ManualClock) -> None:
    async with engine_through(settings, clock, accept_with_latin1_reply) as engine:
        first = await engine.send(message_body())
        second = await engine.send(message_body())

        await engine.deliver_due()

        delivered = await engine.get_message(first.message_id)
        assert delivered.status is MessageStatus.DELIVERED
        assert delivered.last_reply is not None
        assert delivered.last_reply.text == "2.0.0 queued as caf\ufffd"
        [*_, event] = await engine.list_events(first.message_id)
        assert event.data["reply"] == "2.0.0 queued as caf\ufffd"
        after = await engine.get_message(second.message_id)
        assert after.status is MessageStatus.DELIVERED


async def test_refusal_not_utf8(settings: Settings, clock: ManualClock) -> None:
    async with engine_through(settings, clock, refuse_with_latin1_reply) as engine:
        sent = await engine.send(message_body())

        await engine.deliver_due()

        bounced = await engine.get_message(sent.message_id)
        assert bounced.status is MessageStatus.BOUNCED
        assert bounced.last_reply is not None
        assert bounced.last_reply.text.endswith("unknown user \ufffd")
