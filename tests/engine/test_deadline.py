"""A message past its expires_at, or whose lease ran out, is never handed
to DATA."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sendarix_backends import Engine, Settings
from sendarix_backends.delivery import DeliveryWorker
from sendarix_backends.smtp.fence import before_data
from sendarix_core.clock import ManualClock
from sendarix_core.memory import MemoryStore
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body

pytestmark = pytest.mark.anyio


class SlowTransport:
    """A transport whose MAIL and RCPT take ``delay`` of the clock's time."""

    def __init__(self, clock: ManualClock, delay: timedelta) -> None:
        self.clock = clock
        self.delay = delay
        self.sent: list[str] = []

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        self.clock.advance(self.delay)
        await before_data()
        self.sent.append(envelope.message_id)
        return SmtpReply(code=250, enhanced_code="2.0.0", text="ok", mx_host="mx")

    async def aclose(self) -> None:
        return None


async def run_one(delay: timedelta) -> tuple[MessageStatus, list[str]]:
    clock = ManualClock()
    store = MemoryStore()
    transport = SlowTransport(clock, delay)
    engine = Engine(
        settings=Settings(),
        store=store,
        queue=store,
        transport=transport,
        sink=transport,
        clock=clock,
        workers=False,
    )
    async with engine:
        deadline = (clock.now() + timedelta(seconds=10)).isoformat()
        result = await engine.send(message_body(expires_at=deadline))
        await engine.deliver_due()
        message = await engine.get_message(result.message_id)
    return message.status, transport.sent


async def test_deadline_passed_before_data() -> None:
    status, sent = await run_one(timedelta(seconds=11))
    assert status == MessageStatus.EXPIRED
    assert sent == []


async def test_deadline_not_reached_delivers() -> None:
    status, sent = await run_one(timedelta(seconds=9))
    assert status == MessageStatus.DELIVERED
    assert len(sent) == 1


class StalledTransport:
    """A transport whose MAIL and RCPT take ``seconds`` of real time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent: list[str] = []

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        await anyio.sleep(self.seconds)
        await before_data()
        self.sent.append(envelope.message_id)
        return SmtpReply(code=250, enhanced_code="2.0.0", text="ok", mx_host="mx")

    async def aclose(self) -> None:
        return None


def slow_engine(transport: StalledTransport) -> Engine:
    store = MemoryStore()
    return Engine(
        settings=Settings(lease_seconds=0.3),
        store=store,
        queue=store,
        transport=transport,
        sink=transport,
        workers=False,
    )


async def test_lease_renewed_while_slow() -> None:
    transport = StalledTransport(0.8)

    async with slow_engine(transport) as engine:
        sent = await engine.send(message_body())
        await engine.deliver_due()
        message = await engine.get_message(sent.message_id)

    assert message.status == MessageStatus.DELIVERED
    assert transport.sent == [message.id]


async def test_lost_lease_given_back_unsent(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = StalledTransport(0.4)

    async with slow_engine(transport) as engine:
        sent = await engine.send(message_body())
        # A worker that stops renewing, as one stopped with SIGSTOP does.
        with monkeypatch.context() as patched:
            patched.setattr(DeliveryWorker, "_renew_leases", _never_renew)
            await engine.deliver_due()
        given_back = await engine.get_message(sent.message_id)
        unsent = list(transport.sent)
        await engine.deliver_due()
        delivered = await engine.get_message(sent.message_id)

    assert unsent == []
    assert given_back.status == MessageStatus.ACCEPTED
    assert given_back.attempts == 1
    assert delivered.status == MessageStatus.DELIVERED
    assert delivered.attempts == 1
    assert transport.sent == [sent.message_id]


async def _never_renew(self: DeliveryWorker) -> None:
    await anyio.sleep_forever()
