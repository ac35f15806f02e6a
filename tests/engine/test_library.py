"""The engine as an integrator embeds it, as the README and docs show."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from sendarix_backends import Engine, Settings
from sendarix_backends.smtp import SinkTransport
from sendarix_core.clock import ManualClock
from sendarix_core.memory import MemoryStore
from sendarix_core.states import MessageStatus
from sendarix_core.suppression import SuppressionReason
from tests.conftest import DOMAIN
from tests.engine.conftest import message_body
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def test_background_workers_deliver(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        poll_interval=0.1,
    )
    async with Engine.from_settings(settings) as engine:
        result = await engine.send(message_body(), idempotency_key="login-42-code")
        with anyio.fail_after(20):
            while (await engine.get_message(result.message_id)).status != "delivered":
                await anyio.sleep(0.05)

    assert [m.rcpt_tos for m in smtp_server.messages] == [(f"ada@{DOMAIN}",)]


async def test_memory_store_with_sink() -> None:
    store = MemoryStore()
    sink = SinkTransport(keep=100)
    clock = ManualClock()
    engine = Engine(
        settings=Settings(),
        store=store,
        queue=store,
        transport=sink,
        sink=sink,
        clock=clock,
        workers=False,
    )
    async with engine:
        later = (clock.now() + timedelta(minutes=5)).isoformat()
        first = await engine.send(message_body())
        second = await engine.send(message_body(scheduled_time=later))
        await engine.suppress("blocked@example.test", SuppressionReason.MANUAL)
        third = await engine.send(message_body("blocked@example.test"))

        await engine.deliver_due()
        assert (
            await engine.get_message(first.message_id)
        ).status == MessageStatus.DELIVERED
        assert (
            await engine.get_message(second.message_id)
        ).status == MessageStatus.SCHEDULED
        assert (
            await engine.get_message(third.message_id)
        ).status == MessageStatus.SUPPRESSED

        clock.advance(timedelta(minutes=5))
        await engine.deliver_due()
        assert (
            await engine.get_message(second.message_id)
        ).status == MessageStatus.DELIVERED

    assert [envelope.rcpt_to for envelope in sink.envelopes] == [f"ada@{DOMAIN}"] * 2
