"""Stopping the engine while deliveries are in flight: those whose content
went out wait for their reply, so no message goes out twice."""

from __future__ import annotations

from datetime import timedelta

import anyio
import attrs
import pytest

from sendarix_backends import engine as engine_module
from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "SHUTDOWN_GRACE_SECONDS", 0.2)


async def test_stop_waits_for_reply_to_content(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    # The server has the message but replies only after the grace period.
    smtp_server.delay_data_reply(1.5)
    async with Engine.from_settings(settings) as engine:
        sent = await engine.send(message_body())
        await anyio.to_thread.run_sync(smtp_server.wait_for_messages, 1)

    async with Engine.from_settings(settings, workers=False) as engine:
        message = await engine.get_message(sent.message_id)
    assert message.status == MessageStatus.DELIVERED
    assert len(smtp_server.messages) == 1


async def test_stop_releases_unsent_message(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.tarpit()
    async with Engine.from_settings(settings) as engine:
        sent = await engine.send(message_body())
        with anyio.fail_after(10):
            while (await engine.get_message(sent.message_id)).status != (
                MessageStatus.ACCEPTED
            ):
                await anyio.sleep(0.05)

    smtp_server.tarpit(enabled=False)
    # Released at the stop, so the next engine delivers it at once rather
    # than after the lease of a minute.
    async with Engine.from_settings(settings) as engine:
        with anyio.fail_after(10):
            while (await engine.get_message(sent.message_id)).status != (
                MessageStatus.DELIVERED
            ):
                await anyio.sleep(0.05)
    assert len(smtp_server.messages) == 1


async def test_cancelled_caller_waits_for_reply(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    # The caller's scope is cancelled while the server has the content
    # and has not replied: the engine stops as it does on a normal exit.
    smtp_server.delay_data_reply(1.5)
    with anyio.move_on_after(30) as scope:
        async with Engine.from_settings(settings) as engine:
            sent = await engine.send(message_body())
            await anyio.to_thread.run_sync(smtp_server.wait_for_messages, 1)
            scope.cancel()
            await anyio.sleep_forever()

    async with Engine.from_settings(settings, workers=False) as engine:
        message = await engine.get_message(sent.message_id)
    assert message.status == MessageStatus.DELIVERED
    assert len(smtp_server.messages) == 1


async def test_stop_right_after_send_releases_claim(
    settings: Settings, smtp_server: SmtpServer
) -> None:
    # Leaving the block at once can stop the worker while it claims the
    # new messages; they are delivered or released, not left leased.
    sink = attrs.evolve(settings, delivery_mode="sink")
    async with Engine.from_settings(sink) as engine:
        sent = [(await engine.send(message_body())).message_id for _ in range(50)]

    async with Engine.from_settings(sink, workers=False) as engine:
        claimable = await engine.queue.claim_due(
            "checker", engine.clock.now(), 100, timedelta(minutes=1)
        )
        leased = [
            message_id
            for message_id in sent
            if message_id not in {message.id for message in claimable}
            and not (await engine.get_message(message_id)).status.is_terminal
        ]
    assert leased == []
