"""Real SMTP clients submit through STARTTLS and AUTH; the messages are
delivered through MX lookup and show up with their events."""

from __future__ import annotations

import shutil
import smtplib
from email.message import EmailMessage

import aiosmtplib
import anyio
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.ports import MessageQuery
from sendarix_http.app import create_app
from sendarix_http.relay import Relay
from tests.conftest import DOMAIN
from tests.relay.conftest import (
    RECIPIENT,
    SENDER,
    connect,
    message_bytes,
    submit,
)
from tests.support.certificates import TestCertificate
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


def queued_ids(reply: bytes) -> list[str]:
    """Return the message ids of a ``250`` reply to DATA, in order."""
    return [
        line.split()[4] for line in reply.decode().splitlines() if "queued as" in line
    ]


async def delivered_ids(engine: Engine, message_ids: list[str]) -> list[str]:
    await engine.deliver_due()
    statuses = [(await engine.get_message(mid)).status for mid in message_ids]
    return [
        mid
        for mid, status in zip(message_ids, statuses, strict=True)
        if status == "delivered"
    ]


async def test_smtplib_plain_delivers(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    smtp_server: SmtpServer,
) -> None:
    data = message_bytes()
    code, reply = await submit(relay_settings, certificate, api_key, data)
    assert code == 250
    [message_id] = queued_ids(reply)
    assert await delivered_ids(engine, [message_id]) == [message_id]

    [received] = smtp_server.wait_for_messages(1)
    assert received.data.endswith(data)
    assert received.rcpt_tos == (RECIPIENT,)
    events = await engine.list_events(message_id)
    assert [str(event.type) for event in events] == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]


async def test_smtplib_login_many_recipients(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    smtp_server: SmtpServer,
) -> None:
    recipients = [f"user{number}@{DOMAIN}" for number in range(3)]

    def submit() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", relay_settings.relay_port, timeout=10) as client:
            client.starttls(context=certificate.client_context())
            client.ehlo()
            client.user, client.password = "legacy-app", api_key
            client.auth("LOGIN", client.auth_login)
            return client.sendmail(SENDER, recipients, message_bytes())

    refused = await anyio.to_thread.run_sync(submit)
    assert refused == {}
    await engine.deliver_due()
    received = smtp_server.wait_for_messages(3)
    assert sorted(message.rcpt_tos[0] for message in received) == recipients


@pytest.mark.parametrize("value", ["<>", "legacy+2Bapp@acme.example"])
async def test_mail_auth_parameter_accepted(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    value: str,
) -> None:
    # A server that offers AUTH accepts MAIL's AUTH parameter (RFC 4954).
    def submit() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", relay_settings.relay_port, timeout=10) as client:
            client.starttls(context=certificate.client_context())
            client.login("legacy-app", api_key)
            return client.sendmail(
                SENDER, [RECIPIENT], message_bytes(), mail_options=[f"AUTH={value}"]
            )

    refused = await anyio.to_thread.run_sync(submit)

    assert refused == {}
    page = await engine.list_messages(MessageQuery())
    assert len(page.items) == 1


async def test_aiosmtplib_delivers(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    smtp_server: SmtpServer,
) -> None:
    message = EmailMessage()
    message["From"] = f"Ada <{SENDER}>"
    message["To"] = RECIPIENT
    message["Subject"] = "Grüße aus dem Relay"
    message["X-Sendarix-Tags"] = "relay"
    message.set_content("Hallo, schöne Grüße.\n")

    async with aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=relay_settings.relay_port,
        start_tls=True,
        tls_context=certificate.client_context(),
    ) as client:
        await client.login("legacy-app", api_key)
        _, reply = await client.send_message(message)

    [message_id] = queued_ids(reply.encode())
    assert await delivered_ids(engine, [message_id]) == [message_id]
    stored = await engine.get_message(message_id)
    assert stored.content.subject == "Grüße aus dem Relay"
    assert stored.tags == ("relay",)
    [received] = smtp_server.wait_for_messages(1)
    assert b"X-Sendarix-Tags" not in received.data


async def test_pipelined_commands(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    def submit() -> bytes:
        with connect(relay_settings, certificate, api_key) as client:
            pipelined = (
                f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n"
                "RCPT TO:<bob@>\r\nDATA\r\n"
            )
            client.send(pipelined)
            replies = [client.getreply() for _ in range(4)]
            assert [code for code, _ in replies] == [250, 250, 553, 354]
            client.send(message_bytes() + b".\r\n")
            code, reply = client.getreply()
            assert code == 250
            return reply

    reply = await anyio.to_thread.run_sync(submit)
    assert len(queued_ids(reply)) == 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks_delivers(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    api_key: str,
    smtp_server: SmtpServer,
) -> None:
    command = [
        "swaks",
        "--server", f"127.0.0.1:{relay_settings.relay_port}",
        "--tls",
        "--auth", "PLAIN",
        "--auth-user", "legacy-app",
        "--auth-password", api_key,
        "--from", SENDER,
        "--to", RECIPIENT,
        "--header", "Subject: From swaks",
        "--header", "X-Sendarix-Priority: high",
        "--pipeline",
    ]  # fmt: skip
    result = await anyio.run_process(command, check=False)
    output = result.stdout.decode()
    assert result.returncode == 0, output

    [message_id] = [
        line.split("queued as ")[1].split()[0]
        for line in output.splitlines()
        if "queued as" in line and line.startswith("<~")
    ]
    assert await delivered_ids(engine, [message_id]) == [message_id]
    stored = await engine.get_message(message_id)
    assert str(stored.priority) == "high"
    assert stored.content.subject == "From swaks"
    [received] = smtp_server.wait_for_messages(1)
    assert b"X-Sendarix-Priority" not in received.data


async def test_relay_message_in_http_api(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    _, reply = await submit(relay_settings, certificate, api_key, message_bytes())
    [message_id] = queued_ids(reply)
    await engine.deliver_due()

    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as client:
        listing = (await client.get("/v1/messages")).json()["data"]
        events = (await client.get(f"/v1/messages/{message_id}/events")).json()
    assert [item["message_id"] for item in listing] == [message_id]
    assert listing[0]["status"] == "delivered"
    assert listing[0]["from"] == f"Ada <{SENDER}>"
    assert [event["type"] for event in events["data"]] == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]


async def test_relay_subject_shown_without_line_breaks(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    smtp_server: SmtpServer,
) -> None:
    data = message_bytes(subject="=?utf-8?q?a=0D=0AX-Injected:_1?=")
    _, reply = await submit(relay_settings, certificate, api_key, data)
    [message_id] = queued_ids(reply)
    await engine.deliver_due()

    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as client:
        message = (await client.get(f"/v1/messages/{message_id}")).json()
    assert message["subject"] == "a X-Injected: 1"
    [received] = smtp_server.wait_for_messages(1)
    assert received.data.endswith(data)
