"""Return paths under the sender's own domain, and reports sent back to them."""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator

import anyio.to_thread
import attrs
import pytest

from sendarix_backends.domains import DomainStatus
from sendarix_backends.engine import Engine
from sendarix_backends.events.query import EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_backends.inbound.server import InboundServer
from sendarix_backends.settings import SenderVerification, Settings
from sendarix_core.clock import ManualClock
from sendarix_core.states import MessageStatus
from tests.conftest import DOMAIN
from tests.content.conftest import publish
from tests.inbound.reports import dsn
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

# The settings' SENDARIX_RETURN_PATH_DOMAIN is bounces.acme.example; the
# messages here come from another domain, so the two return paths differ.
SENDER_DOMAIN = "shop.example"


def body(recipient: str = f"ada@{DOMAIN}") -> dict[str, object]:
    return {
        "recipient": recipient,
        "from": f"Shop <no-reply@{SENDER_DOMAIN}>",
        "subject": "Your receipt",
        "text": "Thank you for your order.",
    }


async def verify_sender_domain(engine: Engine, dns_server: DnsServer) -> None:
    domains = engine.content.domains
    domain = await domains.add({"domain": SENDER_DOMAIN})
    publish(dns_server, domains.records(domain))
    verified = await domains.verify(SENDER_DOMAIN)
    assert verified.missing == ()
    assert verified.status is DomainStatus.VERIFIED


async def send_and_deliver(engine: Engine) -> str:
    sent = await engine.send(body())
    await engine.deliver_due()
    message = await engine.get_message(sent.message_id)
    assert message.status is MessageStatus.DELIVERED
    return message.id


@pytest.fixture
async def inbound(
    engine: Engine, services: EventServices
) -> AsyncIterator[InboundServer]:
    server = InboundServer(
        services.reports,
        host="127.0.0.1",
        port=0,
        domain="bounces.acme.example",
        accepts_domain=engine.content.domains.receives_reports_for,
    )
    async with server:
        yield server


def send_report(
    server: InboundServer, rcpt: str, data: bytes
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        try:
            client.sendmail("", [rcpt], data)
        except smtplib.SMTPRecipientsRefused as refused:
            return refused.recipients
    return {}


async def test_verified_domain_gets_aligned_return_path(
    engine: Engine, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    await verify_sender_domain(engine, dns_server)

    message_id = await send_and_deliver(engine)

    [received] = smtp_server.messages
    assert received.mail_from == f"bounces+{message_id}@bounces.{SENDER_DOMAIN}"


async def test_unverified_domain_keeps_shared_return_path(
    settings: Settings,
    clock: ManualClock,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
) -> None:
    unchecked = attrs.evolve(settings, sender_verification=SenderVerification.OFF)
    async with Engine.from_settings(unchecked, clock=clock, workers=False) as engine:
        # Added but never published, so verification would fail.
        await engine.content.domains.add({"domain": SENDER_DOMAIN})

        message_id = await send_and_deliver(engine)

    [received] = smtp_server.messages
    assert received.mail_from == f"bounces+{message_id}@bounces.acme.example"


async def test_report_to_aligned_address_recorded(
    engine: Engine,
    services: EventServices,
    dns_server: DnsServer,
    inbound: InboundServer,
) -> None:
    await verify_sender_domain(engine, dns_server)
    message_id = await send_and_deliver(engine)

    report = dsn(recipient=f"ada@{DOMAIN}", original_message_id="<x@y>")
    rcpt = f"bounces+{message_id}@bounces.{SENDER_DOMAIN}"
    refused = await anyio.to_thread.run_sync(send_report, inbound, rcpt, report)

    assert refused == {}
    query = EventQuery(message_id=message_id, types=frozenset({"message.bounced"}))
    [event] = (await services.search(query)).items
    assert event.data["asynchronous"] is True
    assert event.data["enhanced_code"] == "5.1.1"


async def test_bounce_subdomain_of_unknown_domain_refused(
    inbound: InboundServer,
) -> None:
    rcpt = "bounces+msg_01kp0000000000000000000000@bounces.other.example"
    refused = await anyio.to_thread.run_sync(
        send_report, inbound, rcpt, b"Subject: hi\r\n\r\nx\r\n"
    )

    code, reply = refused[rcpt]
    assert code == 550
    assert reply.startswith(b"5.7.1")
    assert b"bounces.<sending domain>" in reply


async def test_return_path_domain_itself_accepted(
    engine: Engine, inbound: InboundServer
) -> None:
    accepts = engine.content.domains.receives_reports_for

    assert await accepts("bounces.acme.example")
    assert await accepts("BOUNCES.ACME.EXAMPLE")
    assert not await accepts("acme.example")
    assert not await accepts("bounces.")
