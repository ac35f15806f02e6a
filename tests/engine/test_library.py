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
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
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


class CountingTransport:
    """Accepts every message after a short wait and records the peak number
    of deliveries in progress at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.delivered: list[str] = []

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await anyio.sleep(0.01)
        self.active -= 1
        self.delivered.append(envelope.message_id)
        return SmtpReply(code=250, enhanced_code="2.0.0", text="ok", mx_host="mx")

    async def aclose(self) -> None:
        return None


async def test_background_workers_deliver_waves() -> None:
    store = MemoryStore()
    transport = CountingTransport()
    engine = Engine(
        settings=Settings(worker_concurrency=3, poll_interval=0.05),
        store=store,
        queue=store,
        transport=transport,
        sink=transport,
    )
    async with engine:
        # The second wave comes after the delivery tasks have gone idle.
        for wave in range(2):
            results = [await engine.send(message_body()) for _ in range(10)]
            with anyio.fail_after(20):
                while len(transport.delivered) < 10 * (wave + 1):
                    await anyio.sleep(0.05)
            for result in results:
                message = await engine.get_message(result.message_id)
                assert message.status == MessageStatus.DELIVERED

    assert len(transport.delivered) == 20
    assert len(set(transport.delivered)) == 20
    assert transport.peak <= 3


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
