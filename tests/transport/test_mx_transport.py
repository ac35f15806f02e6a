"""MxTransport against a real DNS server and real SMTP servers on loopback.

Two SMTP servers listen on one port at 127.0.0.1 and 127.0.0.2, because the
transport dials every MX host on the same port, as it would port 25.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import attrs
import pytest

from sendarix_backends.smtp import MxResolver, MxTransport, TlsMode
from sendarix_backends.smtp.transport import MAX_ADDRESSES_PER_ATTEMPT
from sendarix_core.errors import PermanentDeliveryError, TemporaryDeliveryError
from tests.support.certificates import TestCertificate
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer
from tests.transport.conftest import DOMAIN, make_envelope

pytestmark = pytest.mark.anyio


@pytest.fixture
def other_server(smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    """A second SMTP server on 127.0.0.2, on the first one's port."""
    with SmtpServer(host="127.0.0.2", port=smtp_server.port) as server:
        yield server


@pytest.fixture
def two_mx(dns_server: DnsServer, other_server: SmtpServer) -> None:
    """mx1 (preference 10) is 127.0.0.2, mx2 (preference 20) is 127.0.0.1."""
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_mx(DOMAIN, 20, "mx2.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.2")
    dns_server.add_a("mx2.example.test", "127.0.0.1")


@pytest.fixture
async def quick_transport(
    resolver: MxResolver, smtp_server: SmtpServer
) -> AsyncIterator[MxTransport]:
    """A transport that gives up on a silent server after half a second."""
    transport = MxTransport(
        resolver,
        port=smtp_server.port,
        helo_name="sender.example.test",
        timeout=0.5,
        data_timeout=0.5,
    )
    yield transport
    await transport.aclose()


# Delivery


async def test_deliver_returns_data_reply(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    reply = await transport.deliver(make_envelope())

    assert reply.code == 250
    assert reply.enhanced_code == "2.0.0"
    assert reply.text == "2.0.0 OK queued"
    assert reply.mx_host == "mx1.example.test"


async def test_deliver_records_envelope(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    envelope = make_envelope()

    await transport.deliver(envelope)

    [message] = routed_server.messages
    assert message.mail_from == "bounces@sender.example.test"
    assert message.rcpt_tos == ("ada@example.test",)
    assert message.message_id == "<msg-1@sender.example.test>"
    assert message.data == envelope.data


async def test_deliver_prefers_lowest_preference(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    transport: MxTransport,
) -> None:
    reply = await transport.deliver(make_envelope())

    assert reply.mx_host == "mx1.example.test"
    assert len(other_server.messages) == 1
    assert smtp_server.messages == []


async def test_deliver_skips_host_that_is_down(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    transport: MxTransport,
) -> None:
    other_server.take_down()

    reply = await transport.deliver(make_envelope())

    assert reply.mx_host == "mx2.example.test"
    assert len(smtp_server.messages) == 1


async def test_deliver_skips_silent_host(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    quick_transport: MxTransport,
) -> None:
    other_server.tarpit()

    reply = await quick_transport.deliver(make_envelope())

    assert reply.mx_host == "mx2.example.test"
    assert len(smtp_server.messages) == 1


async def test_deliver_skips_host_closing_at_mail(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    transport: MxTransport,
) -> None:
    other_server.reply_with("421 4.3.2 shutting down", at="MAIL")

    reply = await transport.deliver(make_envelope())

    assert reply.mx_host == "mx2.example.test"
    assert len(smtp_server.messages) == 1


async def test_lost_reply_after_dot_not_resent(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    transport: MxTransport,
) -> None:
    other_server.drop_after_message()

    with pytest.raises(TemporaryDeliveryError, match="may have accepted") as caught:
        await transport.deliver(make_envelope())

    # The first host has the message; a second copy waits for the retry.
    assert len(other_server.messages) == 1
    assert smtp_server.messages == []
    assert caught.value.mx_host == "mx1.example.test"
    assert caught.value.enhanced_code == "4.4.2"


async def test_silent_reply_after_dot_not_resent(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    quick_transport: MxTransport,
) -> None:
    other_server.delay_data_reply(2.0)

    with pytest.raises(TemporaryDeliveryError, match="may have accepted"):
        await quick_transport.deliver(make_envelope())

    assert smtp_server.messages == []


async def test_content_reply_waits_past_command_timeout(
    resolver: MxResolver, routed_server: SmtpServer
) -> None:
    routed_server.delay_data_reply(1.0)
    transport = MxTransport(
        resolver,
        port=routed_server.port,
        helo_name="sender.example.test",
        timeout=0.3,
        data_timeout=5,
    )
    try:
        reply = await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    assert reply.code == 250
    assert len(routed_server.messages) == 1


async def test_deliver_to_implicit_mx(
    dns_server: DnsServer, smtp_server: SmtpServer, transport: MxTransport
) -> None:
    dns_server.add_a(DOMAIN, "127.0.0.1")

    reply = await transport.deliver(make_envelope())

    assert reply.mx_host == DOMAIN
    assert len(smtp_server.messages) == 1


# DNS failures


async def test_deliver_null_mx(dns_server: DnsServer, transport: MxTransport) -> None:
    dns_server.add_null_mx(DOMAIN)

    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 556
    assert caught.value.enhanced_code == "5.1.10"
    assert caught.value.recipient == "ada@example.test"


async def test_deliver_nxdomain(transport: MxTransport) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope("ada@missing.test"))

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code == "5.1.2"
    assert caught.value.recipient == "ada@missing.test"


async def test_deliver_servfail(dns_server: DnsServer, transport: MxTransport) -> None:
    dns_server.set_servfail(DOMAIN)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 451
    assert caught.value.enhanced_code == "4.4.3"


async def test_deliver_invalid_recipient(transport: MxTransport) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope("no-at-sign"))

    assert caught.value.enhanced_code == "5.1.3"


# Connection failures


async def test_deliver_every_host_down(
    two_mx: None,
    smtp_server: SmtpServer,
    other_server: SmtpServer,
    transport: MxTransport,
) -> None:
    smtp_server.take_down()
    other_server.take_down()

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code is None
    assert caught.value.enhanced_code == "4.4.1"
    assert "mx1.example.test" in caught.value.reply_text
    assert "mx2.example.test" in caught.value.reply_text
    assert caught.value.details["hosts_tried"] == [
        "mx1.example.test",
        "mx2.example.test",
    ]


async def test_attempt_address_limit(
    dns_server: DnsServer, smtp_server: SmtpServer, transport: MxTransport
) -> None:
    # Twelve hosts, none listening; the last one, past the limit, would be.
    hosts = [f"mx{number:02d}.example.test" for number in range(12)]
    for number, host in enumerate(hosts):
        dns_server.add_mx(DOMAIN, 10 + number, host)
        dns_server.add_a(host, f"127.0.0.{number + 2}")
    dns_server.remove(hosts[-1])
    dns_server.add_a(hosts[-1], "127.0.0.1")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.details["hosts_tried"] == hosts[:MAX_ADDRESSES_PER_ATTEMPT]
    assert smtp_server.connections == 0


async def test_deliver_421_everywhere(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("421 4.3.2 shutting down", at="RCPT")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 421
    assert caught.value.enhanced_code == "4.3.2"


# Replies


async def test_deliver_temporary_reply(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("451 4.7.1 try later")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 451
    assert caught.value.enhanced_code == "4.7.1"
    assert caught.value.reply_text == "4.7.1 try later"
    assert caught.value.mx_host == "mx1.example.test"
    assert caught.value.recipient == "ada@example.test"
    assert caught.value.details["stage"] == "DATA"


async def test_deliver_after_temporary_replies(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("451 4.7.1 try later", times=2)

    for _ in range(2):
        with pytest.raises(TemporaryDeliveryError):
            await transport.deliver(make_envelope())
    reply = await transport.deliver(make_envelope())

    assert reply.code == 250
    assert len(routed_server.messages) == 1


async def test_deliver_unknown_recipient(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reject_recipient("ada@example.test")

    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code == "5.1.1"
    assert caught.value.reply_text == "5.1.1 no such user"
    assert caught.value.details["stage"] == "RCPT"


async def test_deliver_policy_rejection(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("554 5.7.1 message refused")

    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 554
    assert caught.value.enhanced_code == "5.7.1"


async def test_deliver_sender_rejection(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("553 5.7.1 sender not allowed", at="MAIL")

    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 553
    assert caught.value.details["stage"] == "MAIL"


async def test_deliver_reply_without_enhanced_code(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("550 mailbox unavailable", at="RCPT")

    with pytest.raises(PermanentDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code is None


async def test_rejection_keeps_session(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reject_recipient("bad@example.test")

    with pytest.raises(PermanentDeliveryError):
        await transport.deliver(make_envelope("bad@example.test"))
    await transport.deliver(make_envelope())

    assert routed_server.command_count("RSET") == 1
    assert routed_server.connections == 1


async def test_deliver_oversized_message(
    dns_server: DnsServer, resolver: MxResolver
) -> None:
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    with SmtpServer(data_size_limit=64) as server:
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            with pytest.raises(PermanentDeliveryError) as caught:
                await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    assert caught.value.reply_code == 552
    assert caught.value.enhanced_code == "5.3.4"


# SMTPUTF8


async def test_deliver_smtputf8(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    await transport.deliver(make_envelope("zoë@example.test", smtputf8=True))

    [message] = routed_server.messages
    assert message.rcpt_tos == ("zoë@example.test",)
    assert "SMTPUTF8" in message.mail_options


async def test_deliver_smtputf8_unsupported(
    dns_server: DnsServer, resolver: MxResolver
) -> None:
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    with SmtpServer(smtputf8=False) as server:
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            with pytest.raises(PermanentDeliveryError) as caught:
                await transport.deliver(
                    make_envelope("zoë@example.test", smtputf8=True)
                )
        finally:
            await transport.aclose()

    assert caught.value.reply_code == 553
    assert caught.value.enhanced_code == "5.6.7"
    assert server.messages == []


async def test_deliver_8bit_body_without_8bitmime(
    dns_server: DnsServer, resolver: MxResolver
) -> None:
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    envelope = attrs.evolve(
        make_envelope(), data=make_envelope().data.replace(b"Hello.", "héllo".encode())
    )
    with SmtpServer(eight_bit_mime=False, smtputf8=False) as server:
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            with pytest.raises(PermanentDeliveryError) as caught:
                await transport.deliver(envelope)
        finally:
            await transport.aclose()

    assert caught.value.reply_code == 554
    assert caught.value.enhanced_code == "5.6.3"
    assert server.messages == []


async def test_deliver_8bit_header_without_8bitmime(
    dns_server: DnsServer, resolver: MxResolver
) -> None:
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    envelope = attrs.evolve(
        make_envelope(),
        data=make_envelope().data.replace(b"Subject: Test", "Subject: Tëst".encode()),
    )
    with SmtpServer(eight_bit_mime=False, smtputf8=False) as server:
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            await transport.deliver(envelope)
        finally:
            await transport.aclose()

    # UTF-8 headers without SMTPUTF8 go out as they are (docs/limitations.md).
    assert len(server.messages) == 1


# TLS


def routed_tls_server(
    dns_server: DnsServer, certificate: TestCertificate
) -> SmtpServer:
    dns_server.add_mx(DOMAIN, 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    return SmtpServer(tls_context=certificate.server_context())


async def test_deliver_uses_starttls(
    dns_server: DnsServer, resolver: MxResolver, certificate: TestCertificate
) -> None:
    with routed_tls_server(dns_server, certificate) as server:
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    [message] = server.messages
    assert message.tls is True


async def test_refused_starttls_goes_on_clear(
    dns_server: DnsServer, resolver: MxResolver, certificate: TestCertificate
) -> None:
    with routed_tls_server(dns_server, certificate) as server:
        server.reply_with("454 4.7.0 TLS not available", at="STARTTLS")
        transport = MxTransport(resolver, port=server.port, helo_name="sender.test")
        try:
            reply = await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    assert reply.code == 250
    [message] = server.messages
    assert message.tls is False


async def test_refused_starttls_defers_when_required(
    dns_server: DnsServer, resolver: MxResolver, certificate: TestCertificate
) -> None:
    with routed_tls_server(dns_server, certificate) as server:
        server.reply_with("454 4.7.0 TLS not available", at="STARTTLS")
        transport = MxTransport(
            resolver, port=server.port, helo_name="sender.test", tls=TlsMode.REQUIRED
        )
        try:
            with pytest.raises(TemporaryDeliveryError) as caught:
                await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    assert server.messages == []
    assert caught.value.reply_code == 454


async def test_deliver_with_tls_off(
    dns_server: DnsServer, resolver: MxResolver, certificate: TestCertificate
) -> None:
    with routed_tls_server(dns_server, certificate) as server:
        transport = MxTransport(
            resolver, port=server.port, helo_name="sender.test", tls=TlsMode.NONE
        )
        try:
            await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    [message] = server.messages
    assert message.tls is False


async def test_deliver_tls_required_not_offered(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    transport = MxTransport(
        resolver, port=routed_server.port, helo_name="sender.test", tls="required"
    )
    try:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    assert "STARTTLS" in caught.value.reply_text
    assert routed_server.messages == []


async def test_deliver_tls_required_verified(
    dns_server: DnsServer, resolver: MxResolver, certificate: TestCertificate
) -> None:
    with routed_tls_server(dns_server, certificate) as server:
        transport = MxTransport(
            resolver,
            port=server.port,
            helo_name="sender.test",
            tls="required",
            tls_context=certificate.client_context(),
        )
        try:
            await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    [message] = server.messages
    assert message.tls is True


# Logging


async def test_clear_text_warning_once(
    routed_server: SmtpServer,
    transport: MxTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sendarix.smtp")

    for number in range(3):
        await transport.deliver(make_envelope(number=number))

    warnings = [
        record for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "without TLS" in warnings[0].getMessage()


async def test_debug_log_omits_body(
    routed_server: SmtpServer,
    transport: MxTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sendarix.smtp")

    await transport.deliver(make_envelope())

    assert "MAIL: 250" in caplog.text
    assert "Hello." not in caplog.text
    assert "Subject" not in caplog.text
