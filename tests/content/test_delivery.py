"""What arrives at a real SMTP server: MIME bytes and DKIM signatures.

Messages go through the engine (validation, storage, the delivery worker,
the SMTP client) to the aiosmtpd server on loopback. DKIM signatures are
checked by dkimpy, which reads the public keys from the test DNS server.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendarix_backends.engine import Engine
from sendarix_core.clock import ManualClock
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus
from tests.content.conftest import dns_txt_lookup, message_body, verified_domain
from tests.core.test_mime import display_name, expected_text, line_problems
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


def parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body_text(parsed: EmailMessage, subtype: str) -> str:
    part = parsed.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


async def send_and_receive(
    engine: Engine, smtp_server: SmtpServer, body: dict[str, Any]
) -> tuple[Message, bytes]:
    smtp_server.reset()
    result = await engine.send(body)
    await engine.deliver_due()
    [received] = smtp_server.wait_for_messages(1)
    return await engine.get_message(result.message_id), received.data


def attachment(filename: str, content: bytes, content_type: str) -> dict[str, Any]:
    return {
        "filename": filename,
        "content_type": content_type,
        "content": base64.b64encode(content).decode("ascii"),
    }


async def test_hard_case_arrives_intact(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    text = "Hallo Jörg,\n" + "x" * 2000 + "\n.\n..\nEnde\n"
    html = "<p>Grüße</p>\n<p>" + "y" * 2000 + "</p>\n.\n"
    name = "Übersicht für Jörg \u2013 Dezember.pdf"
    pdf = b"%PDF-1.7\n\x00\r\n\xff" + bytes(range(256))
    body = message_body(
        recipient={"name": "Jörg Müller", "email": "joerg@example.test"},
        subject="Ihre Übersicht für Dezember \u2013 bitte prüfen",
        text=text,
        html=html,
        attachments=[attachment(name, pdf, "application/pdf")],
        **{"from": {"name": "Acme GmbH & Co. KG, Vertrieb", "email": "a@acme.example"}},
    )

    _, raw = await send_and_receive(engine, smtp_server, body)
    parsed = parse(raw)

    assert line_problems(raw) == []
    assert parsed["Subject"] == "Ihre Übersicht für Dezember \u2013 bitte prüfen"
    assert display_name(raw, "From") == "Acme GmbH & Co. KG, Vertrieb"
    assert display_name(raw, "To") == "Jörg Müller"
    assert body_text(parsed, "plain") == text
    assert body_text(parsed, "html") == html
    [received] = list(parsed.iter_attachments())
    assert received.get_filename() == name
    assert received.get_content() == pdf


async def test_escaped_display_name_arrives(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    # 800 characters, quoted and escaped to 1,602.
    name = '"\\' * 400
    body = message_body(
        recipient={"name": name, "email": "ada@example.test"},
        # 998 characters. A dot is not atext, so the name is quoted.
        headers={"Reply-To": "a." * 495 + "<r@a.bc>"},
        **{"from": {"name": name, "email": "no-reply@acme.example"}},
    )

    message, raw = await send_and_receive(engine, smtp_server, body)

    assert message.status == MessageStatus.DELIVERED
    assert line_problems(raw) == []
    assert display_name(raw, "From") == name
    assert display_name(raw, "To") == name
    assert display_name(raw, "Reply-To") == "a." * 495


async def test_scheduled_message_dated_when_due(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    later = clock.now() + timedelta(days=3)
    result = await engine.send(message_body(scheduled_time=later.isoformat()))
    smtp_server.reset()
    smtp_server.drop_after_message()

    clock.advance(timedelta(days=3, minutes=5))
    await engine.deliver_due()
    clock.advance(timedelta(hours=1))
    await engine.deliver_due()
    message = await engine.get_message(result.message_id)
    first, second = smtp_server.wait_for_messages(2)

    assert message.status == MessageStatus.DELIVERED
    assert parse(first.data)["Date"].datetime == later
    assert second.data == first.data


async def test_immediate_message_dated_when_created(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    created = clock.now()
    smtp_server.reset()
    await engine.send(message_body())

    clock.advance(timedelta(minutes=5))
    await engine.deliver_due()
    [received] = smtp_server.wait_for_messages(1)

    assert parse(received.data)["Date"].datetime == created


async def test_non_ascii_local_part_uses_smtputf8(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    await send_and_receive(
        engine, smtp_server, message_body(recipient="jörg@example.test")
    )

    assert "SMTPUTF8" in smtp_server.messages[0].mail_options


async def test_ascii_addresses_skip_smtputf8(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    await send_and_receive(engine, smtp_server, message_body(subject="Grüße"))

    assert "SMTPUTF8" not in smtp_server.messages[0].mail_options


NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
).map(lambda name: " ".join(name.split()))
SUBJECT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=120,
)
# Email text may not contain NUL, so the API rejects it.
BODY = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
        min_size=1,
        max_size=300,
    ),
    st.lists(
        st.one_of(
            st.just("."), st.just(""), st.text("ab é.", min_size=990, max_size=2100)
        ),
        min_size=1,
        max_size=4,
    )
    .map("\n".join)
    .filter(bool),
)
# The API rejects directories and bidirectional controls in file names.
FILENAME = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
        blacklist_characters="/\\\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    ),
    min_size=1,
    max_size=60,
).filter(str.strip)


# A bounded number of examples through the real server; the builder-level
# property in tests/core/test_mime.py runs many more.
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    subject=SUBJECT,
    sender_name=NAME,
    recipient_name=NAME,
    text=BODY,
    filename=FILENAME,
    content=st.binary(max_size=200),
)
async def test_unicode_round_trip_property(
    engine: Engine,
    smtp_server: SmtpServer,
    subject: str,
    sender_name: str,
    recipient_name: str,
    text: str,
    filename: str,
    content: bytes,
) -> None:
    body = message_body(
        recipient={"name": recipient_name, "email": "ada@example.test"},
        subject=subject,
        text=text,
        attachments=[attachment(filename, content, "application/octet-stream")],
        **{"from": {"name": sender_name, "email": "no-reply@acme.example"}},
    )

    message, raw = await send_and_receive(engine, smtp_server, body)
    parsed = parse(raw)

    assert line_problems(raw) == []
    assert parsed["Subject"] == subject
    assert display_name(raw, "From") == message.sender.display_name
    assert display_name(raw, "To") == message.recipient.display_name
    assert body_text(parsed, "plain") == expected_text(text)
    [received] = list(parsed.iter_attachments())
    assert received["Content-Disposition"].params.get("filename") == filename
    assert received.get_payload(decode=True) == content


def signatures_verify(raw: bytes, dns_server: DnsServer) -> list[bool]:
    lookup = dns_txt_lookup(dns_server)
    count = len(re.findall(rb"^DKIM-Signature:", raw, flags=re.MULTILINE))
    results = []
    for index in range(count):
        try:
            results.append(bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=lookup)))
        except dkim.DKIMException:
            results.append(False)
    return results


async def test_dkim_verifies_from_dns(
    engine: Engine, smtp_server: SmtpServer, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server, ed25519=True)

    _, raw = await send_and_receive(
        engine, smtp_server, message_body(subject="Grüße", list_unsubscribe=True)
    )

    assert signatures_verify(raw, dns_server) == [True, True]
    assert re.search(rb"a=rsa-sha256", raw)
    assert re.search(rb"a=ed25519-sha256", raw)


COVERED = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
]


async def test_dkim_fails_after_header_change(
    engine: Engine, smtp_server: SmtpServer, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server, ed25519=True)
    _, raw = await send_and_receive(
        engine, smtp_server, message_body(list_unsubscribe=True)
    )

    for name in COVERED:
        pattern = re.compile(rb"^(" + name.encode() + rb": )", re.MULTILINE)
        changed = pattern.sub(rb"\1x", raw, count=1)
        assert changed != raw, name
        assert signatures_verify(changed, dns_server) == [False, False], name


ADDED_FIELDS = [
    b"Sender: eve@evil.example",
    b"Reply-To: eve@evil.example",
    b"Cc: eve@evil.example",
    b"In-Reply-To: <msg_0@acme.example>",
    b"References: <msg_0@acme.example>",
    b"List-Unsubscribe: <https://evil.example/u>",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
]


async def test_dkim_fails_after_field_added(
    engine: Engine, smtp_server: SmtpServer, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server, ed25519=True)
    _, raw = await send_and_receive(engine, smtp_server, message_body())

    assert signatures_verify(raw, dns_server) == [True, True]
    for field in ADDED_FIELDS:
        changed = raw.replace(b"\r\nFrom:", b"\r\n" + field + b"\r\nFrom:", 1)
        assert changed != raw, field
        assert signatures_verify(changed, dns_server) == [False, False], field


async def test_dkim_many_fields_lines_fit(
    engine: Engine, smtp_server: SmtpServer, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server, ed25519=True)
    data = (
        b"From: Acme <no-reply@acme.example>\r\n"
        b"To: ada@example.test\r\n"
        b"Subject: Many fields\r\n"
        + b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" * 50
        + b"\r\nBody.\r\n"
    )
    smtp_server.reset()
    [result] = await engine.send_raw(
        data, mail_from="no-reply@acme.example", recipients=["ada@example.test"]
    )
    await engine.deliver_due()
    message = await engine.get_message(result.message_id)

    assert message.status == MessageStatus.DELIVERED
    [received] = smtp_server.wait_for_messages(1)
    raw = received.data
    head = raw.split(b"\r\nFrom:", 1)[0]

    assert line_problems(raw) == []
    assert max(map(len, head.split(b"\r\n"))) <= 78
    assert signatures_verify(raw, dns_server) == [True, True]


async def test_unverified_domain_unsigned(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    _, raw = await send_and_receive(engine, smtp_server, message_body())

    assert b"DKIM-Signature" not in raw
