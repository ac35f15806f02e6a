"""SmarthostTransport: URL parsing, and delivery with STARTTLS, implicit TLS
and AUTH to real aiosmtpd servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sendarix_backends.smtp import SmarthostTransport
from sendarix_core.errors import (
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from tests.support.certificates import TestCertificate
from tests.support.smtp_server import SmtpServer
from tests.transport.conftest import make_envelope

CREDENTIALS = {"ada": "s3cret/pass"}
URL_PASSWORD = "s3cret%2Fpass"


def from_url(
    url: str, certificate: TestCertificate | None = None
) -> SmarthostTransport:
    return SmarthostTransport.from_url(
        url,
        helo_name="sender.example.test",
        timeout=5.0,
        tls_context=certificate.client_context() if certificate else None,
    )


# Parsing


def test_from_url_smtp_defaults() -> None:
    transport = SmarthostTransport.from_url("smtp://relay.example.test")

    assert transport.host == "relay.example.test"
    assert transport.port == 587
    assert transport.username is None
    assert transport.implicit_tls is False


def test_from_url_smtps_defaults() -> None:
    transport = SmarthostTransport.from_url("smtps://relay.example.test")

    assert transport.port == 465
    assert transport.implicit_tls is True


def test_from_url_decodes_credentials() -> None:
    transport = SmarthostTransport.from_url(
        f"smtp://ada%40corp:{URL_PASSWORD}@relay.example.test:2525"
    )

    assert transport.username == "ada@corp"
    assert transport.port == 2525


def test_repr_hides_password() -> None:
    transport = SmarthostTransport.from_url(
        f"smtp://ada:{URL_PASSWORD}@relay.example.test:2525"
    )

    assert "s3cret" not in repr(transport)
    assert "ada@relay.example.test:2525" in repr(transport)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://ada:s3cret@relay.example.test", "must start with smtp://"),
        ("smtp://ada:s3cret@:25", "has no host"),
        ("smtp://ada:s3cret@relay.example.test:99999", "invalid port"),
        ("smtp://ada:s3cret@relay.example.test/path", "has a path"),
    ],
)
def test_from_url_invalid(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        SmarthostTransport.from_url(url)

    assert "s3cret" not in str(caught.value)


# Delivery


@pytest.fixture
async def plain_relay() -> AsyncIterator[SmtpServer]:
    with SmtpServer(credentials=CREDENTIALS, auth_require_tls=False) as server:
        yield server


@pytest.mark.anyio
async def test_deliver_with_auth_over_starttls(certificate: TestCertificate) -> None:
    with SmtpServer(
        tls_context=certificate.server_context(), credentials=CREDENTIALS
    ) as server:
        transport = from_url(
            f"smtp://ada:{URL_PASSWORD}@localhost:{server.port}", certificate
        )
        try:
            reply = await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    [message] = server.messages
    assert reply.code == 250
    assert reply.mx_host == "localhost"
    assert message.tls is True
    assert message.username == "ada"


@pytest.mark.anyio
async def test_deliver_with_auth_on_loopback(plain_relay: SmtpServer) -> None:
    transport = from_url(f"smtp://ada:{URL_PASSWORD}@127.0.0.1:{plain_relay.port}")
    try:
        await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    [message] = plain_relay.messages
    assert message.tls is False
    assert message.username == "ada"


@pytest.mark.anyio
async def test_deliver_without_credentials(smtp_server: SmtpServer) -> None:
    transport = from_url(f"smtp://127.0.0.1:{smtp_server.port}")
    try:
        await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    [message] = smtp_server.messages
    assert message.username is None


@pytest.mark.anyio
async def test_deliver_with_implicit_tls(certificate: TestCertificate) -> None:
    # aiosmtpd 1.4 counts only STARTTLS as TLS when it decides whether to
    # offer AUTH, so the check is turned off for this implicitly TLS server.
    with SmtpServer(
        implicit_tls_context=certificate.server_context(),
        credentials=CREDENTIALS,
        auth_require_tls=False,
    ) as server:
        transport = from_url(
            f"smtps://ada:{URL_PASSWORD}@localhost:{server.port}", certificate
        )
        try:
            await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    [message] = server.messages
    assert message.tls is True
    assert message.username == "ada"


@pytest.mark.anyio
async def test_deliver_reuses_authenticated_session(plain_relay: SmtpServer) -> None:
    transport = from_url(f"smtp://ada:{URL_PASSWORD}@127.0.0.1:{plain_relay.port}")
    try:
        for number in range(5):
            await transport.deliver(make_envelope(number=number))
    finally:
        await transport.aclose()

    assert len(plain_relay.messages) == 5
    assert plain_relay.connections == 1


@pytest.mark.anyio
async def test_deliver_wrong_password(
    plain_relay: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    transport = from_url(f"smtp://ada:wrong-one@127.0.0.1:{plain_relay.port}")
    try:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    assert caught.value.reply_code == 535
    assert "ada" in caught.value.reply_text
    assert "wrong-one" not in caught.value.reply_text
    assert "wrong-one" not in caplog.text
    assert plain_relay.messages == []


@pytest.mark.anyio
async def test_deliver_untrusted_certificate(certificate: TestCertificate) -> None:
    with SmtpServer(tls_context=certificate.server_context()) as server:
        # The default context checks against the system's CAs, which don't
        # include the test certificate.
        transport = from_url(f"smtp://localhost:{server.port}")
        try:
            with pytest.raises(TemporaryDeliveryError) as caught:
                await transport.deliver(make_envelope())
        finally:
            await transport.aclose()

    assert "TLS" in caught.value.reply_text or "certificate" in caught.value.reply_text
    assert server.messages == []


@pytest.mark.anyio
async def test_deliver_relay_down(smtp_server: SmtpServer) -> None:
    smtp_server.take_down()
    transport = from_url(f"smtp://127.0.0.1:{smtp_server.port}")
    try:
        with pytest.raises(TemporaryDeliveryError) as caught:
            await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    assert caught.value.mx_host == "127.0.0.1"
    assert caught.value.recipient == "ada@example.test"


@pytest.mark.anyio
async def test_deliver_relay_rejects_recipient(smtp_server: SmtpServer) -> None:
    smtp_server.reject_recipient("ada@example.test")
    transport = from_url(f"smtp://127.0.0.1:{smtp_server.port}")
    try:
        with pytest.raises(PermanentDeliveryError) as caught:
            await transport.deliver(make_envelope())
    finally:
        await transport.aclose()

    assert caught.value.enhanced_code == "5.1.1"
