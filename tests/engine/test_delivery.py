"""Delivery through the engine to real DNS and SMTP servers on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.engine import Engine
from sendarix_core.clock import ManualClock
from sendarix_core.states import EventType, MessageStatus
from sendarix_core.suppression import SuppressionReason
from tests.engine.conftest import DOMAIN, message_body
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def event_types(engine: Engine, message_id: str) -> list[str]:
    return [str(event.type) for event in await engine.list_events(message_id)]


async def test_message_delivered_via_mx(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    result = await engine.send(message_body())
    assert result.status == "queued"

    assert await engine.deliver_due() == 1

    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.DELIVERED
    assert message.last_reply is not None
    assert message.last_reply.code == 250
    assert message.last_reply.mx_host == "mx1.example.test"
    assert await event_types(engine, result.message_id) == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]
    received = smtp_server.messages
    assert len(received) == 1
    assert list(received[0].rcpt_tos) == [f"ada@{DOMAIN}"]
    assert received[0].message_id == message.message_id_header


async def test_temporary_failures_follow_schedule(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    smtp_server.reply_with("451 4.7.1 greylisted, try later", times=2)
    result = await engine.send(message_body())

    await engine.deliver_due()
    first = await engine.get_message(result.message_id)
    assert first.status == MessageStatus.DEFERRED
    assert first.next_attempt_at == clock.now() + timedelta(seconds=30)

    clock.advance(timedelta(seconds=29))
    assert await engine.deliver_due() == 0
    clock.advance(timedelta(seconds=1))
    await engine.deliver_due()
    second = await engine.get_message(result.message_id)
    assert second.status == MessageStatus.DEFERRED
    assert second.next_attempt_at == clock.now() + timedelta(minutes=5)

    clock.advance(timedelta(minutes=5))
    await engine.deliver_due()
    delivered = await engine.get_message(result.message_id)
    assert delivered.status == MessageStatus.DELIVERED
    assert delivered.attempts == 3
    assert len(smtp_server.messages) == 1


async def test_sixth_temporary_failure_bounces(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    smtp_server.reply_with("451 4.3.0 mailbox busy", times=6)
    result = await engine.send(message_body())
    waits = [timedelta(0), *map(_delay, (30, 300, 1800, 7200, 18000))]

    for wait in waits:
        clock.advance(wait)
        assert await engine.deliver_due() == 1

    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.BOUNCED
    assert message.attempts == 6
    events = await engine.list_events(result.message_id)
    assert [str(e.type) for e in events].count("message.deferred") == 5
    assert events[-1].type == EventType.BOUNCED
    assert events[-1].data["bounce_class"] == "retries_exhausted"


def _delay(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


async def test_bad_mailbox_bounces_and_suppresses(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    smtp_server.reject_recipient(f"ada@{DOMAIN}", "550 5.1.1 no such user")
    first = await engine.send(message_body())
    await engine.deliver_due()

    bounced = await engine.get_message(first.message_id)
    assert bounced.status == MessageStatus.BOUNCED
    assert bounced.last_reply is not None
    assert bounced.last_reply.enhanced_code == "5.1.1"
    entry = await engine.get_suppression(f"ada@{DOMAIN}")
    assert entry.reason == SuppressionReason.HARD_BOUNCE
    assert entry.message_id == first.message_id

    connections = smtp_server.connections
    second = await engine.send(message_body())
    await engine.deliver_due()
    suppressed = await engine.get_message(second.message_id)
    assert suppressed.status == MessageStatus.SUPPRESSED
    assert smtp_server.connections == connections


async def test_policy_block_does_not_suppress(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    smtp_server.reply_with("554 5.7.1 rejected by policy", at="DATA")
    result = await engine.send(message_body())
    await engine.deliver_due()

    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.BOUNCED
    page = await engine.list_suppressions(_all_suppressions())
    assert list(page.items) == []


@pytest.mark.parametrize(
    "reply", ["501 5.1.7 bad sender address", "550 5.1.0 sender address rejected"]
)
async def test_sender_refusal_does_not_suppress(
    engine: Engine, smtp_server: SmtpServer, reply: str
) -> None:
    smtp_server.reply_with(reply, at="MAIL")
    result = await engine.send(message_body())
    await engine.deliver_due()

    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.BOUNCED
    [*_, event] = await engine.list_events(result.message_id)
    assert event.data["bounce_class"] == "invalid_sender"
    assert event.data["suppressed_recipient"] is False
    page = await engine.list_suppressions(_all_suppressions())
    assert list(page.items) == []


def _all_suppressions():  # type: ignore[no-untyped-def]
    from sendarix_core.ports import SuppressionQuery

    return SuppressionQuery()


@pytest.mark.parametrize(
    ("setup", "status", "enhanced_code"),
    [
        ("null_mx", MessageStatus.BOUNCED, "5.1.10"),
        ("nxdomain", MessageStatus.BOUNCED, "5.1.2"),
        ("a_record_only", MessageStatus.DELIVERED, None),
        ("first_mx_down", MessageStatus.DELIVERED, None),
        ("servfail", MessageStatus.DEFERRED, "4.4.3"),
    ],
)
async def test_dns_outcomes(
    engine: Engine,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    setup: str,
    status: MessageStatus,
    enhanced_code: str | None,
) -> None:
    domain = "other.test"
    if setup == "null_mx":
        dns_server.add_null_mx(domain)
    elif setup == "a_record_only":
        dns_server.add_a(domain, "127.0.0.1")
    elif setup == "first_mx_down":
        # Nothing listens on 127.0.0.2 at the test port, so the first MX
        # refuses the connection and the second one takes the message.
        dns_server.add_mx(domain, 10, "mx-down.other.test")
        dns_server.add_a("mx-down.other.test", "127.0.0.2")
        dns_server.add_mx(domain, 20, "mx-up.other.test")
        dns_server.add_a("mx-up.other.test", "127.0.0.1")
    elif setup == "servfail":
        dns_server.set_servfail(domain)

    result = await engine.send(message_body(f"ada@{domain}"))
    await engine.deliver_due()

    message = await engine.get_message(result.message_id)
    assert message.status == status
    if enhanced_code is not None:
        assert message.last_reply is not None
        assert message.last_reply.enhanced_code == enhanced_code
    if status == MessageStatus.DELIVERED:
        assert len(smtp_server.messages) == 1


async def test_scheduled_message_waits_and_cancels(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    later = clock.now() + timedelta(hours=1)
    result = await engine.send(
        message_body(scheduled_time=later.isoformat().replace("+00:00", "Z"))
    )
    assert result.status == "scheduled"
    assert await engine.deliver_due() == 0

    cancelled = await engine.cancel(result.message_id)
    assert cancelled.status == MessageStatus.CANCELLED

    clock.advance(timedelta(hours=2))
    assert await engine.deliver_due() == 0
    assert smtp_server.messages == []
    assert await event_types(engine, result.message_id) == [
        "message.scheduled",
        "message.cancelled",
    ]


async def test_scheduled_message_sent_when_due(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    later = clock.now() + timedelta(minutes=10)
    result = await engine.send(message_body(scheduled_time=later.isoformat()))

    clock.advance(timedelta(minutes=10))
    assert await engine.deliver_due() == 1
    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.DELIVERED


async def test_cancel_after_delivery_is_not_found(engine: Engine) -> None:
    from sendarix_core.errors import MessageNotCancellableError, NotFoundError

    result = await engine.send(message_body())
    await engine.deliver_due()

    with pytest.raises(MessageNotCancellableError):
        await engine.cancel(result.message_id)
    with pytest.raises(NotFoundError):
        await engine.cancel("msg_unknown")


async def test_expired_message_never_sent(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    smtp_server.reply_with("451 4.7.1 try later")
    deadline = clock.now() + timedelta(seconds=10)
    result = await engine.send(message_body(expires_at=deadline.isoformat()))
    await engine.deliver_due()

    clock.advance(timedelta(seconds=10))
    await engine.deliver_due()
    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.EXPIRED
    assert smtp_server.messages == []
