"""Pacing through the engine: rate and connection limits, throttling replies
and their recovery, on real databases, DNS and SMTP."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.clock import ManualClock
from sendarix_core.pacing import messages_per_slot
from sendarix_core.states import MessageStatus
from tests.engine.conftest import DOMAIN, message_body
from tests.pacing.conftest import EXAMPLE_SITE, OTHER, OTHER_SITE
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def set_default_pacing(engine: Engine, **limits: object) -> None:
    await engine.control.routes.update("default", {"action": {"pacing": limits}})


async def send_many(engine: Engine, count: int, domain: str = DOMAIN) -> list[str]:
    ids = []
    for number in range(count):
        result = await engine.send(message_body(f"user{number}@{domain}"))
        ids.append(result.message_id)
    return ids


async def statuses(engine: Engine, ids: list[str]) -> list[MessageStatus]:
    return [(await engine.get_message(i)).status for i in ids]


async def factor_of(engine: Engine, site: str) -> float:
    states = {state.site: state for state in await engine.control.sites()}
    return states[site].factor if site in states else 1.0


async def test_rate_limit_holds_back_rest(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, messages_per_second=2)
    ids = await send_many(engine, 5)

    await engine.deliver_due()

    assert (await statuses(engine, ids)).count(MessageStatus.DELIVERED) == 2
    assert len(smtp_server.messages) == 2
    waiting = [await engine.get_message(i) for i in ids[2:]]
    assert [message.status for message in waiting] == [MessageStatus.QUEUED] * 3
    assert [message.attempts for message in waiting] == [0, 0, 0]
    events = await engine.list_events(ids[4])
    assert [str(event.type) for event in events] == ["message.queued"]

    assert await engine.deliver_due() == 0
    clock.advance(timedelta(seconds=1))
    await engine.deliver_due()
    assert (await statuses(engine, ids)).count(MessageStatus.DELIVERED) == 4


async def test_connection_cap_limits_batch(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, max_connections=1)
    ids = await send_many(engine, 5)

    await engine.deliver_due()

    # A new site is taken at two messages per slot; the rest wait untouched.
    delivered = (await statuses(engine, ids)).count(MessageStatus.DELIVERED)
    assert delivered == messages_per_slot(0.25) == 2
    assert smtp_server.peak_sessions == 1
    waiting = [await engine.get_message(i) for i in ids[2:]]
    assert [message.attempts for message in waiting] == [0, 0, 0]

    clock.advance(timedelta(seconds=1))
    await engine.deliver_due()
    assert await statuses(engine, ids) == [MessageStatus.DELIVERED] * 5
    assert smtp_server.peak_sessions == 1


async def test_connection_cap_keeps_slots_busy(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, max_connections=3)
    ids = await send_many(engine, 50)

    # The first claim takes two messages per slot and hands the rest back
    # at once, since no delivery to the site has finished yet. Loopback
    # deliveries are fast, so the second claim gives each slot a backlog
    # that waits in the process instead of in the queue.
    rounds = 0
    while MessageStatus.QUEUED in await statuses(engine, ids):
        await engine.deliver_due()
        clock.advance(timedelta(seconds=1))
        rounds += 1

    assert rounds == 2
    assert await statuses(engine, ids) == [MessageStatus.DELIVERED] * 50
    assert smtp_server.peak_sessions == 3


async def test_connection_rate_reuses_session(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    await set_default_pacing(engine, connections_per_minute=1)
    ids = await send_many(engine, 5)

    # The clock does not move, so the site has one connection token in all.
    with anyio.fail_after(30):
        await engine.deliver_due()

    assert await statuses(engine, ids) == [MessageStatus.DELIVERED] * 5
    assert smtp_server.connections == 1


async def test_throttle_slows_one_site(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, messages_per_second=10)
    smtp_server.reject_recipient(
        f"slow@{DOMAIN}", "421 4.7.0 Too many messages, slow down"
    )
    throttled = await engine.send(message_body(f"slow@{DOMAIN}"))
    await engine.deliver_due()

    message = await engine.get_message(throttled.message_id)
    assert message.status == MessageStatus.DEFERRED
    assert await factor_of(engine, EXAMPLE_SITE) == 0.5
    assert await factor_of(engine, OTHER_SITE) == 1.0

    example = await send_many(engine, 20)
    other = await send_many(engine, 20, OTHER)
    await engine.deliver_due()
    assert (await statuses(engine, example)).count(MessageStatus.DELIVERED) == 5
    assert (await statuses(engine, other)).count(MessageStatus.DELIVERED) == 10


async def test_throttled_site_recovers(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, messages_per_second=10)
    smtp_server.reply_with("421 4.7.0 Try again later", at="RCPT")
    await engine.send(message_body(f"slow@{DOMAIN}"))
    await engine.deliver_due()

    clock.advance(timedelta(seconds=25))
    assert await factor_of(engine, EXAMPLE_SITE) == pytest.approx(0.75)
    clock.advance(timedelta(seconds=25))
    assert await factor_of(engine, EXAMPLE_SITE) == 1.0

    await send_many(engine, 20)
    await engine.deliver_due()
    # The deferred message is due again and takes one of the ten tokens.
    assert len(smtp_server.messages) == 10


async def test_throttle_caps_unlimited_site(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    smtp_server.reject_recipient(f"slow@{DOMAIN}", "421 4.7.0 Too many connections")
    await engine.send(message_body(f"slow@{DOMAIN}"))
    await engine.deliver_due()

    ids = await send_many(engine, 8)
    await engine.deliver_due()

    # The throttled site's cap is 5 of 10 connections; the messages beyond
    # the slots waited for one of the 5 sessions.
    assert await statuses(engine, ids) == [MessageStatus.DELIVERED] * 8
    assert smtp_server.peak_sessions <= 5


async def test_greylisting_does_not_throttle(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    smtp_server.reply_with("451 4.7.1 greylisted, try later")
    await engine.send(message_body())

    await engine.deliver_due()

    assert await factor_of(engine, EXAMPLE_SITE) == 1.0


async def test_route_retry_schedule(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await engine.control.routes.create(
        {
            "match": {"recipient_domains": [DOMAIN]},
            "action": {"retry": {"intervals": [10], "max_attempts": 2}},
        }
    )
    smtp_server.reply_with("451 4.3.0 mailbox busy", times=2)
    result = await engine.send(message_body())

    await engine.deliver_due()
    deferred = await engine.get_message(result.message_id)
    assert deferred.next_attempt_at == clock.now() + timedelta(seconds=10)

    clock.advance(timedelta(seconds=10))
    await engine.deliver_due()
    bounced = await engine.get_message(result.message_id)
    assert bounced.status == MessageStatus.BOUNCED
    events = await engine.list_events(result.message_id)
    assert events[-1].data["bounce_class"] == "retries_exhausted"


async def test_expired_while_held_back(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await set_default_pacing(engine, messages_per_minute=1)
    deadline = clock.now() + timedelta(seconds=5)
    await engine.send(message_body("first@example.test"))
    late = await engine.send(
        message_body("late@example.test", expires_at=deadline.isoformat())
    )
    await engine.deliver_due()
    assert (await engine.get_message(late.message_id)).status == MessageStatus.QUEUED

    clock.advance(timedelta(seconds=5))
    await engine.deliver_due()

    expired = await engine.get_message(late.message_id)
    assert expired.status == MessageStatus.EXPIRED
    assert len(smtp_server.messages) == 1


async def test_source_address_bound(engine: Engine, smtp_server: SmtpServer) -> None:
    await engine.control.routes.create({"action": {"source_address": "127.0.0.2"}})
    await engine.send(message_body())

    await engine.deliver_due()

    [received] = smtp_server.messages
    assert received.peer == "127.0.0.2"


async def test_smarthost_rule_delivers(engine: Engine) -> None:
    with SmtpServer() as relay:
        await engine.control.routes.create(
            {
                "match": {"recipient_domains": ["partner.test"]},
                "action": {
                    "transport": "smarthost",
                    "smarthost": f"smtp://127.0.0.1:{relay.port}",
                },
            }
        )
        result = await engine.send(message_body("ada@partner.test"))

        await engine.deliver_due()

        message = await engine.get_message(result.message_id)
        assert message.status == MessageStatus.DELIVERED
        assert [m.rcpt_tos for m in relay.messages] == [("ada@partner.test",)]
