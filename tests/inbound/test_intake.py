"""Bounce and complaint reports sent by SMTP to the return-path address."""

from __future__ import annotations

import base64
import logging
import smtplib
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio.to_thread
import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.query import EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_backends.inbound.intake import _ignored
from sendarix_backends.inbound.reports import DeliveryReport, parse_report
from sendarix_backends.inbound.server import InboundServer
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.errors import ConfigurationError, NotFoundError
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus
from sendarix_core.suppression import SuppressionReason
from sendarix_http.app import create_app
from sendarix_http.inbound import attach_inbound
from tests.conftest import DOMAIN
from tests.inbound.reports import arf, dsn
from tests.support.smtp_server import SmtpServer
from tests.webhooks.conftest import message_body

pytestmark = pytest.mark.anyio

RETURN_DOMAIN = "bounces.acme.example"


@pytest.fixture
async def inbound(services: EventServices) -> AsyncIterator[InboundServer]:
    server = InboundServer(
        services.reports, host="127.0.0.1", port=0, domain=RETURN_DOMAIN
    )
    async with server:
        yield server


async def send_report(server: InboundServer, rcpt: str, data: bytes) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("", [rcpt], data)

    await anyio.to_thread.run_sync(send)


async def delivered_message(
    engine: Engine, recipient: str = f"ada@{DOMAIN}"
) -> Message:
    sent = await engine.send(message_body(recipient))
    await engine.deliver_due()
    message = await engine.get_message(sent.message_id)
    assert message.status is MessageStatus.DELIVERED
    return message


async def assert_not_suppressed(engine: Engine, message: Message) -> None:
    with pytest.raises(NotFoundError):
        await engine.get_suppression(message.recipient.email)


def verp(message: Message) -> str:
    return f"bounces+{message.id}@{RETURN_DOMAIN}"


async def events_of(services: EventServices, message: Message, kind: str) -> list:
    query = EventQuery(message_id=message.id, types=frozenset({kind}))
    return list((await services.search(query)).items)


async def test_envelope_sender_is_verp(engine: Engine, smtp_server: SmtpServer) -> None:
    message = await delivered_message(engine)

    [received] = smtp_server.messages
    assert received.mail_from == verp(message)


async def test_hard_bounce_recorded_and_suppressed(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(recipient=message.recipient.email, original_message_id="<x@y>")
    await send_report(inbound, verp(message), report)

    [event] = await events_of(services, message, "message.bounced")
    assert event.data["asynchronous"] is True
    assert event.data["enhanced_code"] == "5.1.1"
    assert event.data["smtp_code"] == 550
    assert event.data["bounce_class"] == "invalid_recipient"
    assert event.data["reporting_mta"] == "mx.example.test"
    assert (await engine.get_message(message.id)).status is MessageStatus.DELIVERED
    entry = await engine.get_suppression(message.recipient.email)
    assert entry.reason is SuppressionReason.HARD_BOUNCE
    assert entry.message_id == message.id


async def test_policy_bounce_not_suppressed(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(
        recipient=message.recipient.email,
        original_message_id=message.message_id_header,
        status="5.7.1",
        diagnostic="smtp; 550 5.7.1 rejected by policy",
    )
    await send_report(inbound, verp(message), report)

    [event] = await events_of(services, message, "message.bounced")
    assert event.data["bounce_class"] == "policy"
    assert event.data["suppressed_recipient"] is False
    assert await engine.store.get_suppressions([message.recipient.email]) == {}


async def test_complaint_recorded_and_suppressed(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = arf(
        recipient=message.recipient.email,
        original_message_id=message.message_id_header,
    )
    await send_report(inbound, verp(message), report)

    [event] = await events_of(services, message, "message.complained")
    assert event.data["feedback_type"] == "abuse"
    assert event.data["user_agent"] == "ExampleFBL/1.0"
    entry = await engine.get_suppression(message.recipient.email)
    assert entry.reason is SuppressionReason.COMPLAINT


async def test_delayed_notice_is_not_a_bounce(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(
        recipient=message.recipient.email,
        original_message_id=message.message_id_header,
        action="delayed",
        status="4.4.7",
        diagnostic="smtp; 451 4.4.7 still trying",
    )
    await send_report(inbound, verp(message), report)

    assert await events_of(services, message, "message.bounced") == []
    assert await engine.store.get_suppressions([message.recipient.email]) == {}


async def test_message_found_by_message_id(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = arf(
        recipient=message.recipient.email,
        original_message_id=message.message_id_header,
    )
    await send_report(inbound, f"fbl@{RETURN_DOMAIN}", report)

    assert len(await events_of(services, message, "message.complained")) == 1


async def test_foreign_message_id_ignored(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    forged = f"<{message.id}@elsewhere.example>"
    report = arf(recipient=message.recipient.email, original_message_id=forged)
    await send_report(inbound, f"fbl@{RETURN_DOMAIN}", report)

    assert await events_of(services, message, "message.complained") == []


async def test_resent_report_recorded_once(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(recipient=message.recipient.email, original_message_id="<x@y>")
    await send_report(inbound, verp(message), report)
    await send_report(inbound, verp(message), report)

    assert len(await events_of(services, message, "message.bounced")) == 1


async def test_concurrent_copies_recorded_once(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)
    report = dsn(recipient=message.recipient.email, original_message_id="<x@y>")

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(send_report, inbound, verp(message), report)

    assert len(await events_of(services, message, "message.bounced")) == 1


async def test_test_key_message_report_ignored(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    _, key = await engine.create_api_key("sandbox", environment="test")
    sent = await engine.send(message_body(), api_key=key)
    await engine.deliver_due()
    message = await engine.get_message(sent.message_id)
    assert message.test_mode

    report = dsn(recipient=message.recipient.email, original_message_id="<x@y>")
    await send_report(inbound, verp(message), report)

    assert await events_of(services, message, "message.bounced") == []
    await assert_not_suppressed(engine, message)


async def test_unattempted_message_report_ignored(
    engine: Engine, services: EventServices, inbound: InboundServer, clock: ManualClock
) -> None:
    later = (clock.now() + timedelta(days=1)).isoformat()
    sent = await engine.send(message_body(scheduled_time=later))
    message = await engine.get_message(sent.message_id)

    report = dsn(recipient=message.recipient.email, original_message_id="<x@y>")
    await send_report(inbound, verp(message), report)

    assert await events_of(services, message, "message.bounced") == []
    await assert_not_suppressed(engine, message)


async def test_delayed_recipient_not_bounced(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(
        recipient=message.recipient.email,
        original_message_id="<x@y>",
        action="delayed",
        status="4.4.1",
        other_recipients=[("someone-else@example.org", "failed", "5.1.1")],
    )
    await send_report(inbound, verp(message), report)

    assert await events_of(services, message, "message.bounced") == []
    await assert_not_suppressed(engine, message)


async def test_other_failed_recipient_not_bounced(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(
        recipient="first@example.org",
        original_message_id="<x@y>",
        other_recipients=[("second@example.org", "failed", "5.1.1")],
    )
    await send_report(inbound, verp(message), report)

    assert await events_of(services, message, "message.bounced") == []


async def test_forwarded_recipient_bounced(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(recipient="ada@forwarded.example.org", original_message_id="<x@y>")
    await send_report(inbound, verp(message), report)

    [event] = await events_of(services, message, "message.bounced")
    assert event.data["enhanced_code"] == "5.1.1"


async def test_original_recipient_matched(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    report = dsn(
        recipient="ada@forwarded.example.org",
        original_recipient=message.recipient.email,
        original_message_id="<x@y>",
        other_recipients=[("second@example.org", "delayed", "4.4.1")],
    )
    await send_report(inbound, verp(message), report)

    assert len(await events_of(services, message, "message.bounced")) == 1


async def test_other_domain_refused(inbound: InboundServer) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", inbound.port, timeout=10) as client:
            try:
                client.sendmail("", ["victim@example.org"], b"Subject: hi\r\n\r\nx\r\n")
            except smtplib.SMTPRecipientsRefused as refused:
                return refused.recipients
        return {}

    refused = await anyio.to_thread.run_sync(send)

    code, reply = refused["victim@example.org"]
    assert code == 550
    assert reply.startswith(b"5.7.1")


async def test_not_a_report_accepted_and_ignored(
    engine: Engine, services: EventServices, inbound: InboundServer
) -> None:
    message = await delivered_message(engine)

    await send_report(
        inbound, verp(message), b"Subject: out of office\r\n\r\nAway.\r\n"
    )

    assert len((await services.search(EventQuery(message_id=message.id))).items) == 3


def test_parse_dsn_fields() -> None:
    report = parse_report(
        dsn(recipient="ada@example.test", original_message_id="<m@acme.example>")
    )

    assert isinstance(report, DeliveryReport)
    [status] = report.recipients
    assert status.final_recipient == "ada@example.test"
    assert status.action == "failed"
    assert status.status == "5.1.1"
    assert status.remote_mta == "mailbox.example.test"
    assert report.original_message_id == "<m@acme.example>"
    assert report.report_id == "<dsn-1@mx.example.test>"


def test_parse_base64_status_part() -> None:
    report = dsn(recipient="ada@example.test", original_message_id="<m@acme.example>")
    start = report.index(b"Reporting-MTA:")
    end = report.index(b"\r\n--report-boundary", start)
    encoded = base64.encodebytes(report[start:end]).replace(b"\n", b"\r\n")
    header = b"Content-Type: message/delivery-status\r\n"
    body = report[:start].replace(
        header, header + b"Content-Transfer-Encoding: base64\r\n"
    )

    parsed = parse_report(body + encoded + report[end:])

    assert isinstance(parsed, DeliveryReport)
    assert [status.status for status in parsed.recipients] == ["5.1.1"]


def test_parse_global_delivery_status() -> None:
    report = dsn(recipient="jörg@example.test", original_message_id="<m@acme.example>")
    utf8 = report.replace(
        b"message/delivery-status", b"message/global-delivery-status"
    ).replace(b"rfc822; j", b"utf-8; j")

    parsed = parse_report(utf8)

    assert isinstance(parsed, DeliveryReport)
    [status] = parsed.recipients
    assert status.final_recipient == "jörg@example.test"
    assert status.status == "5.1.1"
    assert parsed.original_message_id == "<m@acme.example>"


def test_parse_plain_message_is_none() -> None:
    assert parse_report(b"Subject: hello\r\n\r\nbody\r\n") is None


def test_parse_original_message_id_field() -> None:
    report = dsn(recipient="ada@example.test", original_message_id="<m@acme.example>")
    headers_part = report.index(b"Content-Type: text/rfc822-headers")
    field = b"Original-Message-ID: <field@acme.example>\r\n"
    without_headers = report[:headers_part].replace(
        b"Reporting-MTA:", field + b"Reporting-MTA:"
    )

    parsed = parse_report(without_headers + b"\r\n--report-boundary--\r\n")

    assert isinstance(parsed, DeliveryReport)
    assert parsed.original_message_id == "<field@acme.example>"


async def test_listener_needs_return_path_domain(settings: Settings) -> None:
    without_domain = attrs.evolve(settings, inbound_port=2526, return_path_domain=None)
    engine = Engine.from_settings(without_domain, workers=False)

    with pytest.raises(ConfigurationError, match="SENDARIX_RETURN_PATH_DOMAIN"):
        attach_inbound(create_app(engine), engine)
    assert engine.events is not None
    await engine.events.aclose()


def test_ignored_reason_logged_without_control_characters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="sendarix"):
        _ignored("actions: fai\x00led\r\nforged line")

    [record] = [
        r for r in caplog.records if getattr(r, "action", "") == "report_ignored"
    ]
    assert (
        record.getMessage()
        == "report ignored: actions: fai\\x00led\\x0d\\x0aforged line"
    )
