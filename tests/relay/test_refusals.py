"""What the relay refuses, and the replies it refuses with."""

from __future__ import annotations

import base64
import logging
import smtplib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import anyio
import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.errors import StorageError
from sendarix_core.keys import Scope
from sendarix_core.ports import MessageQuery
from sendarix_http.relay import Relay
from tests.conftest import DOMAIN
from tests.content.conftest import verified_domain
from tests.relay.conftest import (
    RECIPIENT,
    SENDER,
    FakeMonotonic,
    connect,
    create_key,
    message_bytes,
    submit,
)
from tests.relay.test_protocol_safety import RawSession
from tests.support.certificates import TestCertificate
from tests.support.dns_server import DnsServer
from tests.support.server_process import free_port

pytestmark = pytest.mark.anyio

T = TypeVar("T")


async def in_thread(function: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(function)


@asynccontextmanager
async def custom_relay(
    engine: Engine, settings: Settings, certificate: TestCertificate, **changes: object
) -> AsyncIterator[Settings]:
    """Run a second relay with changed settings on its own port."""
    changed = attrs.evolve(settings, relay_port=free_port(), **changes)
    async with Relay(engine, changed, tls_context=certificate.server_context()):
        yield changed


async def test_mail_without_auth(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate
) -> None:
    def mail() -> tuple[int, bytes]:
        with connect(relay_settings, certificate) as client:
            return client.mail(SENDER)

    code, reply = await in_thread(mail)
    assert code == 530
    assert reply.startswith(b"5.7.0")


async def test_auth_needs_tls(relay: Relay, relay_settings: Settings) -> None:
    def attempt() -> tuple[bool, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", relay_settings.relay_port) as client:
            client.ehlo()
            offered = client.has_extn("auth")
            return offered, client.docmd("AUTH", "PLAIN AGEAYg==")

    offered, (code, reply) = await in_thread(attempt)
    assert offered is False
    assert code == 538
    assert reply.startswith(b"5.7.11")


async def test_auth_offered_after_starttls(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate
) -> None:
    def features() -> str:
        with connect(relay_settings, certificate) as client:
            client.ehlo()
            return client.esmtp_features.get("auth", "")

    assert sorted((await in_thread(features)).split()) == ["LOGIN", "PLAIN"]


async def test_second_starttls(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate
) -> None:
    def starttls_again() -> tuple[bool, tuple[int, bytes], int]:
        with connect(relay_settings, certificate) as client:
            offered = client.has_extn("starttls")
            reply = client.docmd("STARTTLS")
            # The session goes on over the TLS it already has.
            return offered, reply, client.noop()[0]

    offered, (code, reply), noop = await in_thread(starttls_again)
    assert offered is False
    assert code == 503
    assert reply.startswith(b"5.5.1")
    assert noop == 250


async def test_hang_up_in_tls_handshake_logged_once(
    relay: Relay, relay_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sendarix.relay")

    def hang_up_after_starttls() -> int:
        client = smtplib.SMTP("127.0.0.1", relay_settings.relay_port, timeout=10)
        client.ehlo()
        code = client.docmd("STARTTLS")[0]
        client.sock.close()
        return code

    assert await in_thread(hang_up_after_starttls) == 220
    with anyio.fail_after(5):
        while "relay TLS handshake failed" not in caplog.text:
            await anyio.sleep(0.05)

    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == "relay TLS handshake failed"
    assert record.levelno == logging.WARNING
    assert record.exc_info is None


async def test_starttls_on_implicit_tls_port(
    engine: Engine, relay_settings: Settings, certificate: TestCertificate
) -> None:
    port = free_port()
    async with custom_relay(
        engine, relay_settings, certificate, relay_implicit_tls_port=port
    ):

        def starttls() -> tuple[bool, tuple[int, bytes]]:
            context = certificate.client_context()
            with smtplib.SMTP_SSL("127.0.0.1", port, context=context) as client:
                client.ehlo()
                return client.has_extn("starttls"), client.docmd("STARTTLS")

        offered, (code, reply) = await in_thread(starttls)
    assert offered is False
    assert code == 503
    assert reply.startswith(b"5.5.1")


async def test_plaintext_loopback_setting(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    async with custom_relay(
        engine, relay_settings, certificate, relay_allow_plaintext_loopback=True
    ) as settings:

        def submit() -> int:
            with smtplib.SMTP("127.0.0.1", settings.relay_port) as client:
                client.login("legacy-app", api_key)
                return client.mail(SENDER)[0]

        assert await in_thread(submit) == 250


async def test_bad_key(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate
) -> None:
    def login() -> None:
        connect(relay_settings, certificate, "sk_live_" + "x" * 32)

    with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        await in_thread(login)
    assert caught.value.smtp_code == 535
    assert caught.value.smtp_error.startswith(b"5.7.8")
    assert b"an active API key with the messages:send scope" in caught.value.smtp_error


async def test_key_without_send_scope(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret = await create_key(engine, scopes=frozenset({Scope.MESSAGES_READ}))

    def login() -> None:
        connect(relay_settings, certificate, secret)

    with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        await in_thread(login)
    assert caught.value.smtp_code == 535
    assert b"messages:send" in caught.value.smtp_error


async def test_mail_from_outside_key_domains(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret = await create_key(engine, sender_domains=("acme.example",))

    def mail() -> tuple[int, bytes]:
        with connect(relay_settings, certificate, secret) as client:
            return client.mail("ceo@evil.example")

    code, reply = await in_thread(mail)
    assert code == 550
    assert reply.startswith(b"5.7.1")
    assert b"acme.example" in reply


async def test_from_header_outside_key_domains(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret = await create_key(engine, sender_domains=("acme.example",))

    data = message_bytes(sender="CEO <ceo@evil.example>")
    code, reply = await submit(relay_settings, certificate, secret, data)
    assert code == 550
    assert reply.startswith(b"5.7.1")
    assert (await engine.list_messages(MessageQuery())).items == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # The email package reads only the first mailbox of these two,
        # where a receiver may show the second.
        (
            message_bytes(sender="<ceo@acme.example> <ceo@evil.example>"),
            b"separate mailboxes with commas",
        ),
        (
            message_bytes(sender="ceo@acme.example ceo@evil.example"),
            b"separate mailboxes with commas",
        ),
        (
            message_bytes(headers="not a field\r\nFrom: ceo@evil.example\r\n"),
            b"'not a field', is neither a header field",
        ),
    ],
)
async def test_headers_read_otherwise_refused(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    data: bytes,
    reason: bytes,
) -> None:
    secret = await create_key(engine, sender_domains=("acme.example",))

    code, reply = await submit(relay_settings, certificate, secret, data)
    assert code == 550
    assert reply.startswith(b"5.6.0")
    assert reason in reply
    assert (await engine.list_messages(MessageQuery())).items == []


@pytest.mark.parametrize("header", ["Sender", "Resent-From", "Resent-Sender"])
async def test_sender_header_outside_key_domains(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    header: str,
) -> None:
    secret = await create_key(engine, sender_domains=("acme.example",))

    data = message_bytes(headers=f"{header}: CEO <ceo@other.test>\r\n")
    code, reply = await submit(relay_settings, certificate, secret, data)
    assert code == 550
    assert reply.startswith(f"5.7.1 {header}: the API key may send only".encode())
    assert b"'other.test'" in reply
    assert (await engine.list_messages(MessageQuery())).items == []


async def test_sender_header_inside_key_domains(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret = await create_key(engine, sender_domains=("acme.example",))

    headers = "Sender: Ops <ops@acme.example>\r\nResent-From: ops@acme.example\r\n"
    code, _ = await submit(
        relay_settings, certificate, secret, message_bytes(headers=headers)
    )
    assert code == 250
    assert len((await engine.list_messages(MessageQuery())).items) == 1


async def test_unverified_sender_header_domain(
    relay_settings: Settings, certificate: TestCertificate, dns_server: DnsServer
) -> None:
    settings = attrs.evolve(
        relay_settings, relay_port=free_port(), sender_verification="required"
    )
    async with Engine.from_settings(settings, workers=False) as engine:
        await verified_domain(engine, dns_server)
        secret = await create_key(engine)
        headers = "Sender: ceo@other.test\r\n"
        async with Relay(engine, settings, tls_context=certificate.server_context()):
            accepted = await submit(settings, certificate, secret, message_bytes())
            refused = await submit(
                settings, certificate, secret, message_bytes(headers=headers)
            )
    assert accepted[0] == 250
    assert refused[0] == 550
    assert refused[1].startswith(b"5.7.1 from: the sender domain 'other.test'")


async def test_unverified_sender_domain(
    relay_settings: Settings, certificate: TestCertificate
) -> None:
    settings = attrs.evolve(
        relay_settings, relay_port=free_port(), sender_verification="required"
    )
    async with Engine.from_settings(settings, workers=False) as engine:
        secret = await create_key(engine)
        async with Relay(engine, settings, tls_context=certificate.server_context()):
            code, reply = await submit(settings, certificate, secret, message_bytes())
    assert code == 550
    assert reply.startswith(b"5.7.1 from: the sender domain 'acme.example'")


@pytest.mark.parametrize(
    ("address", "code", "enhanced"),
    [
        ("bob@", 553, b"5.1.3"),
        ("bob@localhost", 553, b"5.1.3"),
        ("zoë@example.test", 553, b"5.6.7"),
        ("bob@bücher.test", 553, b"5.6.7"),
    ],
)
async def test_invalid_recipient(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    address: str,
    code: int,
    enhanced: bytes,
) -> None:
    def rcpt() -> tuple[int, bytes]:
        with connect(relay_settings, certificate, api_key) as client:
            client.mail(SENDER)
            # Raw bytes: smtplib encodes commands as ASCII without SMTPUTF8.
            client.send(f"RCPT TO:<{address}>\r\n".encode())
            return client.getreply()

    reply_code, reply = await in_thread(rcpt)
    assert reply_code == code
    assert reply.startswith(enhanced)


async def test_smtputf8_recipient(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    def submit() -> dict[str, tuple[int, bytes]]:
        with connect(relay_settings, certificate, api_key) as client:
            return client.sendmail(
                SENDER,
                [f"zoë@{DOMAIN}"],
                message_bytes(recipient=f"zoë@{DOMAIN}"),
                mail_options=["SMTPUTF8"],
            )

    assert await in_thread(submit) == {}
    [message] = (await engine.list_messages(MessageQuery())).items
    assert message.recipient.email == f"zoë@{DOMAIN}"


async def test_non_ascii_sender_domain(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate, api_key: str
) -> None:
    def mail() -> tuple[int, bytes]:
        with connect(relay_settings, certificate, api_key) as client:
            client.send("MAIL FROM:<ada@bücher.test>\r\n".encode())
            return client.getreply()

    code, reply = await in_thread(mail)
    assert code == 553
    assert reply.startswith(b"5.6.7")


async def test_smtputf8_recipient_domain(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    def submit() -> dict[str, tuple[int, bytes]]:
        with connect(relay_settings, certificate, api_key) as client:
            return client.sendmail(
                SENDER,
                ["bob@bücher.test"],
                message_bytes(recipient="bob@bücher.test"),
                mail_options=["SMTPUTF8"],
            )

    assert await in_thread(submit) == {}
    [message] = (await engine.list_messages(MessageQuery())).items
    assert message.recipient.domain == "xn--bcher-kva.test"


async def test_null_sender(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate, api_key: str
) -> None:
    def mail() -> tuple[int, bytes]:
        with connect(relay_settings, certificate, api_key) as client:
            return client.docmd("MAIL", "FROM:<>")

    code, reply = await in_thread(mail)
    assert code == 553
    assert reply.startswith(b"5.1.7 the null sender")


@pytest.mark.parametrize("command", ["MAIL FROM:a@", "RCPT TO:a@"])
async def test_path_without_domain(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    command: str,
) -> None:
    def send() -> tuple[int, bytes]:
        with connect(relay_settings, certificate, api_key) as client:
            if command.startswith("RCPT"):
                client.mail(SENDER)
            client.send(f"{command}\r\n".encode())
            return client.getreply()

    code, reply = await in_thread(send)
    # A permanent error the client must fix, not a temporary internal one.
    assert code == 553
    assert reply.startswith(b"5.1.3")


async def test_too_many_recipients(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate, api_key: str
) -> None:
    def rcpt() -> list[int]:
        with connect(relay_settings, certificate, api_key) as client:
            client.mail(SENDER)
            return [client.rcpt(f"user{number}@{DOMAIN}")[0] for number in range(6)]

    assert await in_thread(rcpt) == [250, 250, 250, 250, 250, 452]


async def test_repeated_recipient_one_message(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    def submit() -> dict[str, tuple[int, bytes]]:
        with connect(relay_settings, certificate, api_key) as client:
            return client.sendmail(
                SENDER, [RECIPIENT, RECIPIENT.upper()], message_bytes()
            )

    await in_thread(submit)
    messages = (await engine.list_messages(MessageQuery())).items
    assert len(messages) == 2
    assert {message.recipient.email for message in messages} == {
        RECIPIENT,
        "BOB@example.test",
    }


async def test_oversized_message_once(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    body = "x" * 76 + "\r\n"
    large = message_bytes(body=body * 2000)

    def submit() -> list[tuple[int, bytes]]:
        with connect(relay_settings, certificate, api_key) as client:
            declared = client.docmd("MAIL", f"FROM:<{SENDER}> SIZE=200000")
            client.mail(SENDER)
            client.rcpt(RECIPIENT)
            too_large = client.data(large)
            # The session stays in step: the next transaction works.
            client.mail(SENDER)
            client.rcpt(RECIPIENT)
            return [declared, too_large, client.data(message_bytes())]

    declared, too_large, accepted = await in_thread(submit)
    assert declared[0] == 552
    assert too_large[0] == 552
    assert accepted[0] == 250
    assert len((await engine.list_messages(MessageQuery())).items) == 1


async def test_command_limit(
    engine: Engine, relay_settings: Settings, certificate: TestCertificate
) -> None:
    async with custom_relay(
        engine, relay_settings, certificate, relay_max_commands=4
    ) as settings:

        def noops() -> list[int]:
            # EHLO and NOOP count as commands; the fifth command is refused.
            with smtplib.SMTP("127.0.0.1", settings.relay_port) as client:
                client.ehlo()
                codes = [client.noop()[0] for _ in range(3)]
                try:
                    codes.append(client.noop()[0])
                except smtplib.SMTPServerDisconnected:
                    codes.append(0)
                return codes

        assert await in_thread(noops) == [250, 250, 250, 421]


async def test_failed_auth_rate_limited(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
    api_key: str,
) -> None:
    def attempt(secret: str) -> int:
        try:
            connect(relay_settings, certificate, secret).quit()
        except smtplib.SMTPAuthenticationError as error:
            return error.smtp_code
        except smtplib.SMTPServerDisconnected:
            return 421
        return 235

    wrong = "sk_live_" + "y" * 32
    codes = [await in_thread(lambda: attempt(wrong)) for _ in range(3)]
    assert codes == [535, 535, 535]
    assert await in_thread(lambda: attempt(api_key)) == 421

    relay_clock.advance(60)
    assert await in_thread(lambda: attempt(api_key)) == 235


async def test_blocked_client_reply(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    wrong = "sk_live_" + "z" * 32

    def attempts() -> tuple[int, bytes]:
        with connect(relay_settings, certificate) as client:
            blob = base64.b64encode(b"\0user\0" + wrong.encode()).decode()
            for _ in range(3):
                client.docmd("AUTH", f"PLAIN {blob}")
            return client.docmd("AUTH", f"PLAIN {blob}")

    code, reply = await in_thread(attempts)
    assert code == 421
    assert reply.startswith(b"4.7.0")


async def test_default_auth_limit_over_sessions(
    engine: Engine, relay_settings: Settings, certificate: TestCertificate
) -> None:
    # Settings() gives the documented default of 10 failures per minute.
    limit = Settings().relay_auth_failure_limit
    async with custom_relay(
        engine, relay_settings, certificate, relay_auth_failure_limit=limit
    ) as settings:

        def attempt() -> int:
            try:
                connect(settings, certificate, "sk_live_" + "w" * 32).quit()
            except smtplib.SMTPAuthenticationError as error:
                return error.smtp_code
            except smtplib.SMTPServerDisconnected:
                return 421
            return 235

        codes = [await in_thread(attempt) for _ in range(limit + 1)]
    assert limit == 10
    assert codes[:limit] == [535] * limit
    assert codes[limit] == 421


async def test_default_auth_limit_in_one_session(
    engine: Engine, relay_settings: Settings, certificate: TestCertificate
) -> None:
    limit = Settings().relay_auth_failure_limit
    blob = base64.b64encode(b"\0user\0sk_live_" + b"v" * 32).decode()
    async with custom_relay(
        engine, relay_settings, certificate, relay_auth_failure_limit=limit
    ) as settings:

        def attempts() -> list[int]:
            with connect(settings, certificate) as client:
                return [
                    client.docmd("AUTH", f"PLAIN {blob}")[0] for _ in range(limit + 1)
                ]

        codes = await in_thread(attempts)
    assert codes[:limit] == [535] * limit
    assert codes[limit] == 421


async def test_auth_limit_concurrent_sessions(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate
) -> None:
    # Sessions that all send their key before the first failure is counted
    # must still get no more than the limit of 3 failures between them.
    sessions = 12
    blob = base64.b64encode(b"\0user\0sk_live_" + b"u" * 32).decode()
    clients = [
        await in_thread(partial(connect, relay_settings, certificate))
        for _ in range(sessions)
    ]

    def send(client: smtplib.SMTP) -> None:
        client.send(f"AUTH PLAIN {blob}\r\n".encode())

    def reply(client: smtplib.SMTP) -> int:
        try:
            return client.getreply()[0]
        except smtplib.SMTPServerDisconnected:
            return 421
        finally:
            client.close()

    for client in clients:
        await in_thread(partial(send, client))
    codes = [await in_thread(partial(reply, client)) for client in clients]
    assert codes.count(535) == 3
    assert codes.count(421) == sessions - 3


async def test_valid_key_concurrent_sessions(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate, api_key: str
) -> None:
    # Many sessions of one client logging in at once with a valid key, as
    # a connection pool does, are all admitted despite the limit of 3.
    sessions = 12
    blob = base64.b64encode(b"\0user\0" + api_key.encode()).decode()
    clients = [
        await in_thread(partial(connect, relay_settings, certificate))
        for _ in range(sessions)
    ]

    def send(client: smtplib.SMTP) -> None:
        client.send(f"AUTH PLAIN {blob}\r\n".encode())

    def reply(client: smtplib.SMTP) -> int:
        try:
            return client.getreply()[0]
        finally:
            client.close()

    for client in clients:
        await in_thread(partial(send, client))
    codes = [await in_thread(partial(reply, client)) for client in clients]
    assert codes == [235] * sessions


async def test_plain_other_identity_refused(
    relay: Relay, relay_settings: Settings, certificate: TestCertificate, api_key: str
) -> None:
    def login(identity: bytes) -> tuple[int, bytes]:
        blob = base64.b64encode(identity + b"\0user\0" + api_key.encode()).decode()
        with connect(relay_settings, certificate) as client:
            return client.docmd("AUTH", f"PLAIN {blob}")

    other = await in_thread(partial(login, b"other"))
    same = await in_thread(partial(login, b"user"))

    assert other[0] == 535
    assert b"authorization identity" in other[1]
    assert same[0] == 235


async def test_rate_limited_key(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret, _ = await engine.create_api_key("slow", rate_limit=1)

    def mails() -> list[int]:
        with connect(relay_settings, certificate, secret) as client:
            first = client.mail(SENDER)[0]
            client.rset()
            return [first, client.mail(SENDER)[0]]

    assert await in_thread(mails) == [250, 451]


async def test_key_revoked_during_session(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
) -> None:
    secret, key = await engine.create_api_key("revoked-later")
    client = await in_thread(partial(connect, relay_settings, certificate, secret))
    try:
        before = await in_thread(partial(client.mail, SENDER))
        await in_thread(client.rset)
        await engine.revoke_api_key(key.id)
        after = await in_thread(partial(client.mail, SENDER))
    finally:
        await in_thread(client.close)

    assert before[0] == 250
    assert after[0] == 550
    assert after[1].startswith(b"5.7.8 The API key was revoked. Connect again")


async def test_key_lookup_storage_failure(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await in_thread(partial(connect, relay_settings, certificate, api_key))
    try:

        async def unavailable(secret: str) -> object:
            raise StorageError("database is locked")

        # The database fails after AUTH, at the lookup MAIL repeats.
        monkeypatch.setattr(engine, "authenticate_and_count", unavailable)
        with caplog.at_level(logging.ERROR):
            code, reply = await in_thread(partial(client.mail, SENDER))
    finally:
        await in_thread(client.close)

    assert code == 451
    assert reply.startswith(b"4.3.0 the API key could not be checked")
    actions = [getattr(record, "action", None) for record in caplog.records]
    assert "relay_key_lookup_failed" in actions
    assert "relay_session_error" not in actions


async def test_idempotency_conflict_reply(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    headers = "Idempotency-Key: order-7\r\n"
    one = message_bytes(headers=headers, body="one\r\n")
    two = message_bytes(headers=headers, body="two\r\n")

    first = await submit(relay_settings, certificate, api_key, one)
    replayed = await submit(relay_settings, certificate, api_key, one)
    conflict = await submit(relay_settings, certificate, api_key, two)
    assert first == replayed
    assert conflict[0] == 550
    assert conflict[1].startswith(b"5.7.0")
    assert b"'order-7' was already used with other recipients" in conflict[1]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-Sendarix-Priority: soon", b"5.6.0 X-Sendarix-Priority: expected"),
        ("Sender: ceo@", b"5.6.0 Sender: "),
        ("Sender: a@acme.example\r\nSender: b@acme.example", b"5.6.0 Sender: "),
        ("Message-ID:", b"5.6.0 Message-ID: the Message-ID header '' is not a valid"),
        (
            "X-Sendarix-Metadata-K: a\u2028b",
            b"5.6.0 X-Sendarix-Metadata-K: 'a\\u2028b' contains the line separator",
        ),
        # Reply text is ASCII, so the quoted value shows é as an escape.
        (
            f"X-Sendarix-Metadata-K: é{'a' * 500}",
            b"5.6.0 X-Sendarix-Metadata-K: '\\xe9" + b"a" * 58 + b"...' is ",
        ),
    ],
)
async def test_invalid_header_reply(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    header: str,
    expected: bytes,
) -> None:
    data = message_bytes(headers=f"{header}\r\n")
    code, reply = await submit(relay_settings, certificate, api_key, data)
    assert code == 550
    assert reply.startswith(expected)
    assert reply.isascii()


async def test_message_id_invalid_utf8_refused(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    engine: Engine,
) -> None:
    headers = "Message-ID: <x_@acme.test>\r\n"
    data = message_bytes(headers=headers).replace(b"<x_@", b"<x\xff@")

    code, reply = await submit(relay_settings, certificate, api_key, data)

    assert code == 550
    assert reply.startswith(b"5.6.0 Message-ID: the Message-ID header is not valid")
    assert (await engine.list_messages(MessageQuery())).items == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # The only From: Python's email package reads "From :" as an mbox
        # "From " line, and dkimpy leaves it out of the signature.
        (
            f"From : {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: s\r\n\r\nb\r\n",
            b"5.6.0 From: the header field 'From :' has whitespace before its colon",
        ),
        # Python's email package ends the header section here.
        (
            message_bytes(headers="X-T\t: v\r\n").decode(),
            b"5.6.0 X-T: the header field 'X-T\\t:' has whitespace before its colon",
        ),
        # Counted as a Message-ID, the relay would add none, and receivers
        # that skip the field would see a message without one.
        (
            message_bytes(headers="Message-ID : <a@acme.example>\r\n").decode(),
            b"5.6.0 Message-ID: the header field 'Message-ID :' has whitespace "
            b"before its colon",
        ),
    ],
    ids=["from", "tab", "message-id"],
)
async def test_space_before_colon_refused(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    engine: Engine,
    data: str,
    expected: bytes,
) -> None:
    code, reply = await submit(relay_settings, certificate, api_key, data.encode())

    assert code == 550
    assert reply.startswith(expected)
    assert b"without the whitespace" in reply
    assert (await engine.list_messages(MessageQuery())).items == []


@pytest.mark.parametrize(
    ("headers", "body", "line"),
    [
        ("", "x" * 999 + "\r\n", 5),
        ("X-Note: " + "n" * 991 + "\r\n", "short\r\n", 4),
    ],
)
async def test_line_over_998_refused(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    engine: Engine,
    headers: str,
    body: str,
    line: int,
) -> None:
    data = message_bytes(headers=headers, body=body)

    code, reply = await submit(relay_settings, certificate, api_key, data)

    assert code == 550
    assert reply.startswith(f"5.6.0 data: line {line} of the message is 999".encode())
    assert (await engine.list_messages(MessageQuery())).items == []


async def test_line_over_smtp_limit_refused(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    engine: Engine,
) -> None:
    # aiosmtpd 1.4.6 reads at most 1,001 bytes a line, CRLF included, so a
    # longer line gets its own reply before the engine receives the message.
    data = message_bytes(body="x" * 1500 + "\r\n")

    code, reply = await submit(relay_settings, certificate, api_key, data)

    assert code == 500
    assert b"Line too long" in reply
    assert (await engine.list_messages(MessageQuery())).items == []


async def test_credentials_not_logged(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    def sessions() -> None:
        connect(relay_settings, certificate, api_key).quit()
        with connect(relay_settings, certificate) as client:
            client.user, client.password = "legacy-app", api_key
            client.auth("LOGIN", client.auth_login)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            connect(relay_settings, certificate, api_key + "x")

    await in_thread(sessions)
    plain = base64.b64encode(b"\0legacy-app\0" + api_key.encode()).decode()
    login = base64.b64encode(api_key.encode()).decode()
    assert "relay client authenticated" in caplog.text
    assert api_key not in caplog.text
    assert plain not in caplog.text
    assert login not in caplog.text


async def test_large_from_header_refused(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    # 20,000 mailboxes, about 400 KB: parsing them would stall the relay
    # for seconds.
    mailboxes = ",\r\n ".join(f"u{index}@acme.example" for index in range(20_000))
    data = message_bytes(sender=mailboxes, headers=f"Sender: {SENDER}\r\n")
    async with custom_relay(
        engine, relay_settings, certificate, relay_max_message_bytes=1_000_000
    ) as settings:
        code, reply = await submit(settings, certificate, api_key, data)

    assert code == 550
    assert reply.startswith(b"5.6.0 From: the From header is ")
    assert b"at most 2000 in an address header" in reply
    assert (await engine.list_messages(MessageQuery())).items == []


@pytest.mark.parametrize("length", [3000, 65_000])
@pytest.mark.parametrize("mechanism", [b"AUTH LOGIN", b"AUTH PLAIN"])
async def test_auth_response_too_long(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    mechanism: bytes,
    length: int,
) -> None:
    def run() -> tuple[bytes, bytes, bytes]:
        session = RawSession(relay_settings.relay_port, certificate, None)
        challenge = session.command(mechanism)
        reply = session.command(b"A" * length)
        noop = session.command(b"NOOP")
        session.close()
        return challenge, reply, noop

    challenge, reply, noop = await in_thread(run)

    assert challenge.startswith(b"334 ")
    assert reply.startswith(b"500 5.5.6 the AUTH response is longer than 1001 octets")
    assert noop.startswith(b"250 ")


@pytest.mark.parametrize("mechanism", [b"AUTH LOGIN", b"AUTH PLAIN"])
async def test_auth_response_line_limit(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    mechanism: bytes,
) -> None:
    def run() -> tuple[bytes, bytes]:
        session = RawSession(relay_settings.relay_port, certificate, None)
        session.command(mechanism)
        # 999 octets and CRLF make 1,001 octets, the maximum.
        longest = session.command(b"A" * 999)
        session.command(mechanism)
        too_long = session.command(b"A" * 1000)
        session.close()
        return longest, too_long

    longest, too_long = await in_thread(run)

    assert longest.startswith(b"501 5.5.2 ")
    assert too_long.startswith(b"500 5.5.6 the AUTH response is longer than 1001")


async def test_help_after_starttls(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    def run() -> tuple[bytes, bytes]:
        session = RawSession(relay_settings.relay_port, certificate, api_key)
        commands = session.command(b"HELP")
        mail = session.command(b"HELP MAIL")
        session.close()
        return commands, mail

    commands, mail = await in_thread(run)

    listed = commands.split(b":", 1)[1].split()
    assert commands.startswith(b"250 ")
    assert b"MAIL" in listed
    assert b"DATA" in listed
    assert b"STARTTLS" not in listed
    assert mail.startswith(b"250 Syntax: MAIL FROM: <address>")
