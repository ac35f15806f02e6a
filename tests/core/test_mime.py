"""Tests of the MIME builder, checked with the standard library's parser."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sendarix_core.mime import (
    build_message_bytes,
    longest_folded_line,
    make_message_id_header,
)
from sendarix_core.model import Address, Attachment, Message, MessageContent
from sendarix_core.states import MessageStatus, Priority

NOW = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)
SENDER = Address("no-reply", "acme.example", "Acme")
RECIPIENT = Address("ada", "example.com", "Ada Lovelace")
PDF = Attachment("report.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)))
LOGO = Attachment("logo.png", "image/png", b"\x89PNG\r\n\x1a\n", "logo", inline=True)


def make_message(
    *,
    subject: str = "Hello",
    text: str | None = "Hi Ada.",
    html: str | None = None,
    attachments: tuple[Attachment, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    sender: Address = SENDER,
    recipient: Address = RECIPIENT,
    message_id: str = "msg_01jf0000000000000000000000",
    message_id_header: str = "",
) -> Message:
    content = MessageContent(
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        headers=headers,
    )
    return Message(
        id=message_id,
        status=MessageStatus.QUEUED,
        priority=next(iter(Priority)),
        sender=sender,
        recipient=recipient,
        content=content,
        created_at=NOW,
        updated_at=NOW,
        message_id_header=message_id_header,
    )


def build(message: Message, **options: Any) -> bytes:
    return build_message_bytes(message, date=NOW, **options)


def parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def raw_header(raw: bytes, name: str) -> str:
    """Return the unfolded value of the header field ``name``."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    unfolded = re.sub(r"\r\n(?=[ \t])", "", head)
    prefix = f"{name}: "
    return next(line for line in unfolded.split("\r\n") if line.startswith(prefix))[
        len(prefix) :
    ]


def display_name(raw: bytes, name: str) -> str:
    """Return the display name of the address in header ``name``."""
    address = parse(raw)[name].addresses[0]
    phrase = raw_header(raw, name).rpartition(" <")[0]
    if phrase.startswith("=?"):
        # CPython 3.11 keeps the space between adjacent encoded words of a
        # phrase, which RFC 2047 section 6.2 says to ignore, so the phrase
        # goes through the older decoder that drops it.
        return str(make_header(decode_header(phrase)))
    return str(address.display_name)


def line_problems(raw: bytes) -> list[str]:
    """List every violation of the CRLF and 998-octet line rules."""
    problems = []
    if not raw.endswith(b"\r\n"):
        problems.append("the message does not end with CRLF")
    if re.search(rb"\r(?!\n)", raw):
        problems.append("bare CR")
    if re.search(rb"(?<!\r)\n", raw):
        problems.append("bare LF")
    for number, line in enumerate(raw.split(b"\r\n")):
        if len(line) > 998:
            problems.append(f"line {number} has {len(line)} octets")
    return problems


def all_header_lines(raw: bytes) -> list[bytes]:
    """Return the header lines of the message and of every MIME part."""
    boundaries = {part.get_boundary() for part in parse(raw).walk()} - {None}
    delimiters = {f"--{boundary}".encode() for boundary in boundaries}
    lines = raw.split(b"\r\n")
    result = []
    in_header = True
    for line in lines:
        if in_header and not line:
            in_header = False
        elif in_header:
            result.append(line)
        elif line in delimiters:
            in_header = True
    return result


def foldable_long_lines(raw: bytes) -> list[bytes]:
    """Return header lines over 78 octets that have a place to fold."""
    long_lines = []
    for line in all_header_lines(raw):
        if len(line) <= 78:
            continue
        value = line.lstrip(b" \t")
        if line == value:
            value = value.split(b": ", 1)[-1]
        if re.search(rb"\S[ \t]+\S", value):
            long_lines.append(line)
    return long_lines


def parts_of(parsed: EmailMessage) -> list[EmailMessage]:
    return [part for part in parsed.walk() if not part.is_multipart()]


def body_text(parsed: EmailMessage, content_type: str) -> str:
    part = parsed.get_body(preferencelist=(content_type.split("/")[1],))
    assert part is not None
    assert part.get_content_type() == content_type
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def expected_text(text: str) -> str:
    """Return ``text`` as a reader gets it: LF line ends and a final one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


# -- Headers ---------------------------------------------------------------


def test_headers_standard_order() -> None:
    raw = build(make_message(headers=(("X-Campaign", "spring"),)))
    names = [line.split(b":")[0] for line in header_lines(raw)]
    assert names == [
        b"From",
        b"To",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"MIME-Version",
        b"X-Campaign",
        b"Content-Type",
        b"Content-Transfer-Encoding",
    ]


def test_headers_extra_before_caller_headers() -> None:
    message = make_message(headers=(("X-Campaign", "spring"),))
    extra = [("List-Unsubscribe", "<https://acme.example/u/1>"), ("X-B", "2")]
    raw = build(message, extra_headers=extra)
    names = [line.split(b":")[0] for line in header_lines(raw)]
    assert names[6:9] == [b"List-Unsubscribe", b"X-B", b"X-Campaign"]


def test_date_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    date = datetime(2026, 12, 4, 17, 30, 5, tzinfo=berlin)
    raw = build_message_bytes(make_message(), date=date)
    assert b"\r\nDate: Fri, 04 Dec 2026 16:30:05 +0000\r\n" in raw


def test_date_naive_rejected() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        build_message_bytes(make_message(), date=datetime(2026, 1, 1))


def test_message_id_built_from_id() -> None:
    parsed = parse(build(make_message(message_id="msg_abc")))
    assert parsed["Message-ID"] == "<msg_abc@acme.example>"


def test_message_id_header_kept() -> None:
    message = make_message(message_id_header="<msg_x@mail.acme.example>")
    parsed = parse(build(message))
    assert parsed["Message-ID"] == "<msg_x@mail.acme.example>"


def test_make_message_id_header() -> None:
    assert make_message_id_header("msg_1", "acme.example") == "<msg_1@acme.example>"


def test_mime_version() -> None:
    assert parse(build(make_message()))["MIME-Version"] == "1.0"


@pytest.mark.parametrize(
    "subject",
    [
        "Your verification code",
        "Grüße aus Köln",
        "日本語の件名です。とても長い件名なので、折り返しが必要になります。" * 2,
        "  leading spaces",
        "trailing space ",
        "two  spaces\tand a tab",
        "looks =?utf-8?q?encoded?= but is not",
        "",
        "a" * 1200,
        "word " * 60,
    ],
)
def test_subject_round_trip(subject: str) -> None:
    raw = build(make_message(subject=subject))
    assert parse(raw)["Subject"] == subject
    assert line_problems(raw) == []


def test_subject_ascii_not_encoded() -> None:
    raw = build(make_message(subject="Your code is 847291"))
    assert b"\r\nSubject: Your code is 847291\r\n" in raw


def test_subject_long_ascii_folded() -> None:
    subject = "The quarterly report " * 10
    raw = build(make_message(subject=subject.strip()))
    assert max(map(len, header_lines(raw))) <= 78


def test_subject_encoded_words_short() -> None:
    raw = build(make_message(subject="Ünïcödé " * 40))
    words = re.findall(rb"=\?utf-8\?[bq]\?[^?]*\?=", raw)
    assert len(words) > 1
    assert max(map(len, words)) <= 75


def test_subject_line_break_rejected() -> None:
    with pytest.raises(ValueError, match="line break"):
        build(make_message(subject="Hello\r\nBcc: eve@example.com"))


@pytest.mark.parametrize(
    ("display_name", "wire"),
    [
        ("Ada Lovelace", b"From: Ada Lovelace <no-reply@acme.example>"),
        ("Lovelace, Ada", b'From: "Lovelace, Ada" <no-reply@acme.example>'),
        ('Ada "The Countess"', b'From: "Ada \\"The Countess\\"" <no-reply@'),
        ("back\\slash", b'From: "back\\\\slash" <no-reply@acme.example>'),
        ("John Q. Public", b'From: "John Q. Public" <no-reply@acme.example>'),
        ("", b"From: no-reply@acme.example\r\n"),
    ],
)
def test_display_name_ascii_wire(display_name: str, wire: bytes) -> None:
    sender = Address("no-reply", "acme.example", display_name)
    raw = build(make_message(sender=sender))
    assert wire in raw


@pytest.mark.parametrize(
    "name",
    [
        "Ada Lovelace",
        "Lovelace, Ada",
        'Ada "The Countess"; of <Lovelace>',
        "back\\slash",
        " padded ",
        "Jörg Müller-Lüdenscheidt",
        "Ünïcode, with comma",
        "=?utf-8?q?not_encoded?=",
        "名前" * 40,
        "Very Long Display Name " * 8,
    ],
)
def test_display_name_round_trip(name: str) -> None:
    sender = Address("no-reply", "acme.example", name)
    raw = build(make_message(sender=sender))
    assert display_name(raw, "From") == name
    assert parse(raw)["From"].addresses[0].addr_spec == "no-reply@acme.example"
    assert line_problems(raw) == []
    assert max(map(len, header_lines(raw))) <= 78


def test_reply_to_quoted_name_lines_fit() -> None:
    # A dot is not atext, so the 990-character name is quoted, which makes
    # "Reply-To: " and the phrase 1,002 octets.
    value = "a." * 495 + "<r@a.bc>"
    raw = build(make_message(headers=(("Reply-To", value),)))

    assert len(value) == 998
    assert line_problems(raw) == []
    assert display_name(raw, "Reply-To") == "a." * 495
    assert parse(raw)["Reply-To"].addresses[0].addr_spec == "r@a.bc"


# ASCII characters of quoted display names: a dot makes a name quoted, and
# quotes and backslashes are escaped in it.
QUOTED_CHARACTERS = ['"', "\\", "a", "."]
MIXED_NAME = st.text(
    st.sampled_from([*QUOTED_CHARACTERS, " ", ",", "=", "?", "ü", "名"])
).map(lambda name: name[:998])
# Escaped, such a name has no space to fold at and passes 998 octets.
LONG_QUOTED_NAME = st.text(
    st.sampled_from(QUOTED_CHARACTERS), min_size=700, max_size=998
)


@settings(max_examples=200, deadline=None)
@given(name=MIXED_NAME | LONG_QUOTED_NAME)
@example(name='"\\' * 400)
@example(name="\\" * 998)
@example(name="a" * 998)
@example(name="x" * 900 + ' "' * 49)
@example(name="Ünïcode" * 142)
def test_display_name_lines_fit_property(name: str) -> None:
    sender = Address("no-reply", "acme.example", name)
    recipient = Address("ada", "example.com", name)
    raw = build(make_message(sender=sender, recipient=recipient))

    assert line_problems(raw) == []
    assert display_name(raw, "From") == name
    assert display_name(raw, "To") == name
    assert parse(raw)["From"].addresses[0].addr_spec == "no-reply@acme.example"
    assert parse(raw)["To"].addresses[0].addr_spec == "ada@example.com"


def test_display_name_line_break_rejected() -> None:
    recipient = Address("ada", "example.com", "Ada\nBcc: eve@example.com")
    with pytest.raises(ValueError, match="line break"):
        build(make_message(recipient=recipient))


def test_recipient_smtputf8_raw() -> None:
    recipient = Address("jörg", "example.de", "Jörg")
    raw = build(make_message(recipient=recipient))
    assert "<jörg@example.de>".encode() in raw
    # BytesParser reads header bytes as ASCII, so RFC 6532 headers are
    # parsed from the decoded text.
    parsed = Parser(policy=policy.default).parsestr(raw.decode("utf-8"))
    assert parsed["To"].addresses[0].addr_spec == "jörg@example.de"
    assert parsed["To"].addresses[0].display_name == "Jörg"


def test_custom_header_non_ascii_encoded() -> None:
    raw = build(make_message(headers=(("X-Note", "für dich"),)))
    assert b"X-Note: =?utf-8?" in raw
    assert parse(raw)["X-Note"] == "für dich"


@pytest.mark.parametrize(
    ("value", "display", "address"),
    [
        ("Ünï <r@acme.test>", "Ünï", "r@acme.test"),
        ("r@bücher.test", "", "r@xn--bcher-kva.test"),
        ("Support <help@acme.example>", "Support", "help@acme.example"),
    ],
)
def test_reply_to_written_as_address(value: str, display: str, address: str) -> None:
    raw = build(make_message(headers=(("Reply-To", value),)))
    [parsed] = parse(raw)["Reply-To"].addresses
    assert parsed.display_name == display
    assert parsed.addr_spec == address


def test_custom_header_long_folded() -> None:
    value = " ".join(f"token{index}" for index in range(60))
    raw = build(make_message(headers=(("X-Tokens", value),)))
    assert max(map(len, header_lines(raw))) <= 78
    assert parse(raw)["X-Tokens"] == value


@pytest.mark.parametrize(
    "name", ["References", "in-reply-to", "List-Unsubscribe", "List-Id"]
)
def test_structured_header_non_ascii_stored_still_sent(name: str) -> None:
    # Validation rejects such a value; a message stored before still goes out.
    raw = build(make_message(headers=((name, "<ü@acme.example>"),)))
    assert str(parse(raw)[name]) == "<ü@acme.example>"


def test_structured_header_folded_not_encoded() -> None:
    # "=?" is atext, and an unstructured value containing it gets encoded.
    value = " ".join(f"<m{index}.=?x?=@mail.example>" for index in range(40))
    raw = build(make_message(headers=(("References", value),)))
    lines = [line for line in header_lines(raw) if b"@mail.example>" in line]
    assert lines[0].startswith(b"References: <m0.=?x?=@mail.example> ")
    assert max(map(len, lines)) <= 78
    assert b"=?utf-8?" not in raw
    assert raw_header(raw, "References") == value


def test_structured_header_longest_line_kept() -> None:
    # "In-Reply-To: " and the id make a line of exactly 998 octets.
    value = "<" + "a" * 970 + "@acme.example>"
    raw = build(make_message(headers=(("In-Reply-To", value),)))
    assert f"In-Reply-To: {value}".encode() in header_lines(raw)
    assert longest_folded_line("In-Reply-To", value) == 998


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("In-Reply-To", "<" + "a" * 971 + "@acme.example>"),
        ("List-Unsubscribe", "<https://acme.example/" + "u" * 964 + ">"),
        ("References", "<" + "b" * 980 + "@acme.example> <a@acme.example>"),
    ],
)
def test_structured_header_unfoldable_stored_still_sent(name: str, value: str) -> None:
    assert longest_folded_line(name, value) > 998
    raw = build(make_message(headers=((name, value),)))
    assert max(map(len, header_lines(raw))) <= 998
    assert str(parse(raw)[name]).replace(" ", "") == value.replace(" ", "")


def test_extra_header_prefolded_kept() -> None:
    value = "v=1; a=rsa-sha256; d=acme.example;\r\n\ts=mail; b=abc"
    raw = build(make_message(), extra_headers=[("DKIM-Signature", value)])
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256; d=acme.example;\r\n\ts=" in raw


@pytest.mark.parametrize(
    "value", ["a\nb", "a\r\nb", "a\rb", "a\r\n", "a\r\n \r\n b", "für\r\n dich"]
)
def test_extra_header_bad_break_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="not folding"):
        build(make_message(), extra_headers=[("X-Bad", value)])


@pytest.mark.parametrize("name", ["", "X Bad", "X:Bad", "Grüße", "X\r\nBcc"])
def test_header_name_invalid_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        build(make_message(headers=((name, "value"),)))


# -- Body structure --------------------------------------------------------


def test_text_only() -> None:
    parsed = parse(build(make_message(text="Hi Ada.", html=None)))
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert body_text(parsed, "text/plain") == "Hi Ada.\n"


def test_html_only() -> None:
    parsed = parse(build(make_message(text=None, html="<p>Hi</p>")))
    assert parsed.get_content_type() == "text/html"
    assert body_text(parsed, "text/html") == "<p>Hi</p>\n"


def test_no_body_empty_text() -> None:
    parsed = parse(build(make_message(text=None, html=None)))
    assert parsed.get_content_type() == "text/plain"
    assert body_text(parsed, "text/plain") == "\n"


def test_alternative_text_first() -> None:
    parsed = parse(build(make_message(text="plain", html="<b>rich</b>")))
    assert parsed.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in parts_of(parsed)]
    assert types == ["text/plain", "text/html"]
    assert body_text(parsed, "text/plain") == "plain\n"
    assert body_text(parsed, "text/html") == "<b>rich</b>\n"


def test_mixed_with_attachment() -> None:
    parsed = parse(build(make_message(html="<p>Hi</p>", attachments=(PDF,))))
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == PDF.content
    assert attachment.get_content_disposition() == "attachment"


def test_attachments_only() -> None:
    message = make_message(text=None, attachments=(PDF,))
    parsed = parse(build(message))
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == ["multipart/mixed", "application/pdf"]


def test_related_around_html() -> None:
    message = make_message(html='<img src="cid:logo">', attachments=(LOGO, PDF))
    parsed = parse(build(message))
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ]
    related = next(p for p in parsed.walk() if p.get_content_subtype() == "related")
    assert related.get_param("type") == "text/html"


def test_inline_image_headers() -> None:
    message = make_message(html='<img src="cid:logo">', attachments=(LOGO,))
    parsed = parse(build(message))
    image = next(p for p in parsed.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == LOGO.content


def test_inline_image_without_html() -> None:
    parsed = parse(build(make_message(attachments=(LOGO,))))
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == ["multipart/mixed", "text/plain", "image/png"]
    image = parts_of(parsed)[1]
    assert image["Content-ID"] == "<logo>"


def test_content_id_brackets_stripped() -> None:
    logo = Attachment("logo.png", "image/png", b"x", "<logo@acme>", inline=True)
    raw = build(make_message(html="<p/>", attachments=(logo,)))
    assert b"\r\nContent-ID: <logo@acme>\r\n" in raw


def test_content_id_invalid_rejected() -> None:
    logo = Attachment("logo.png", "image/png", b"x", "lo go", inline=True)
    with pytest.raises(ValueError, match="invalid Content-ID"):
        build(make_message(html="<p/>", attachments=(logo,)))


@pytest.mark.parametrize("content_type", ["pdf", "text/plain\r\nBcc: x", ""])
def test_attachment_content_type_invalid(content_type: str) -> None:
    attachment = Attachment("a.pdf", content_type, b"x")
    with pytest.raises(ValueError, match="invalid attachment content type"):
        build(make_message(attachments=(attachment,)))


def test_boundaries_differ_per_message() -> None:
    first = parse(build(make_message(message_id="msg_a", attachments=(PDF,))))
    second = parse(build(make_message(message_id="msg_b", attachments=(PDF,))))
    assert first.get_boundary() != second.get_boundary()


def test_output_deterministic() -> None:
    message = make_message(
        subject="Grüße", html='<img src="cid:logo">', attachments=(LOGO, PDF)
    )
    assert build(message) == build(message)


# -- Transfer encodings ----------------------------------------------------


def transfer_encoding(raw: bytes, content_type: str) -> str:
    part = parse(raw).get_body(preferencelist=(content_type.split("/")[1],))
    assert part is not None
    return str(part["Content-Transfer-Encoding"])


def test_ascii_text_7bit() -> None:
    raw = build(make_message(text="Hello\nworld\n.\n"))
    assert transfer_encoding(raw, "text/plain") == "7bit"
    assert raw.endswith(b"\r\n\r\nHello\r\nworld\r\n.\r\n")


def test_line_ends_normalized() -> None:
    raw = build(make_message(text="a\nb\r\nc\rd"))
    assert raw.endswith(b"\r\n\r\na\r\nb\r\nc\r\nd\r\n")


def test_long_ascii_line_quoted_printable() -> None:
    text = "x" * 2000
    raw = build(make_message(text=text))
    assert transfer_encoding(raw, "text/plain") == "quoted-printable"
    assert body_text(parse(raw), "text/plain") == text + "\n"


def test_mostly_ascii_quoted_printable() -> None:
    raw = build(make_message(text="Grüße aus Köln! Wir freuen uns auf Ihren Besuch."))
    assert transfer_encoding(raw, "text/plain") == "quoted-printable"


def test_mostly_non_ascii_base64() -> None:
    text = "日本語のテキストです。\n二行目。"
    raw = build(make_message(text=text))
    assert transfer_encoding(raw, "text/plain") == "base64"
    assert body_text(parse(raw), "text/plain") == expected_text(text)


def test_nul_not_7bit() -> None:
    raw = build(make_message(text="a\0b"))
    assert transfer_encoding(raw, "text/plain") == "quoted-printable"
    assert body_text(parse(raw), "text/plain") == "a\0b\n"


def test_boundary_in_text_not_7bit() -> None:
    probe = parse(build(make_message(html="<p/>")))
    boundary = probe.get_boundary()
    assert boundary is not None
    text = f"--{boundary}\nContent-Type: text/html\n\n<p>injected</p>\n--{boundary}--"
    raw = build(make_message(text=text, html="<p/>"))
    assert transfer_encoding(raw, "text/plain") == "quoted-printable"
    parsed = parse(raw)
    assert len(parts_of(parsed)) == 2
    assert body_text(parsed, "text/plain") == expected_text(text)


def test_attachment_base64_lines() -> None:
    attachment = Attachment("data.bin", "application/octet-stream", bytes(1000))
    raw = build(make_message(attachments=(attachment,)))
    body = raw.split(b"Content-Transfer-Encoding: base64\r\n\r\n")[1]
    lines = body.split(b"\r\n\r\n--")[0].split(b"\r\n")
    assert {len(line) for line in lines[:-1]} == {76}
    assert base64.b64decode(b"".join(lines)) == bytes(1000)


# -- Filenames -------------------------------------------------------------


def attachment_of(raw: bytes) -> EmailMessage:
    attachment = next(parse(raw).iter_attachments())
    assert isinstance(attachment, EmailMessage)
    return attachment


def test_filename_ascii_quoted() -> None:
    pdf = Attachment('my "best" \\ report.pdf', "application/pdf", b"x")
    raw = build(make_message(attachments=(pdf,)))
    assert b'filename="my \\"best\\" \\\\ report.pdf"' in raw
    assert attachment_of(raw).get_filename() == 'my "best" \\ report.pdf'


@pytest.mark.parametrize(
    "filename", ['"' * 600, "quarterly report " * 30 + ".pdf", "x" * 1200]
)
def test_filename_long_ascii(filename: str) -> None:
    raw = build(make_message(attachments=(Attachment(filename, "a/b", b"x"),)))
    attachment = attachment_of(raw)
    assert attachment["Content-Disposition"].params["filename"] == filename
    assert line_problems(raw) == []
    assert foldable_long_lines(raw) == []


def test_filename_non_ascii_rfc2231() -> None:
    pdf = Attachment("Prüfbericht.pdf", "application/pdf", b"x")
    raw = build(make_message(attachments=(pdf,)))
    assert b"filename*=utf-8''Pr%C3%BCfbericht.pdf" in raw
    assert attachment_of(raw).get_filename() == "Prüfbericht.pdf"


def test_filename_non_ascii_name_parameter() -> None:
    pdf = Attachment("Prüfbericht.pdf", "application/pdf", b"x")
    attachment = attachment_of(build(make_message(attachments=(pdf,))))
    assert attachment.get_param("name") == "Prüfbericht.pdf"


def test_filename_long_continuations() -> None:
    filename = "Prüfbericht für das Geschäftsjahr 2026 — endgültige Fassung.pdf"
    raw = build(make_message(attachments=(Attachment(filename, "a/b", b"x"),)))
    assert b"filename*0*=utf-8''" in raw
    assert b"filename*1*=" in raw
    assert attachment_of(raw).get_filename() == filename
    assert max(map(len, raw.split(b"\r\n"))) <= 78


def test_hard_case() -> None:
    text = "Hallo Jörg,\n" + "x" * 2000 + "\n.\nend\n"
    html = "<p>Grüße</p>\n<p>" + "y" * 2000 + "</p>\n.\n"
    name = "Übersicht für Jörg.pdf"
    message = make_message(
        subject="Ihre Übersicht für Dezember",
        text=text,
        html=html,
        attachments=(Attachment(name, "application/pdf", b"\0\r\n\xff"),),
        sender=Address("no-reply", "acme.example", "Acme GmbH & Co. KG"),
        recipient=Address("joerg", "example.de", "Jörg Müller"),
    )
    raw = build(message)
    parsed = parse(raw)

    assert line_problems(raw) == []
    assert parsed["Subject"] == "Ihre Übersicht für Dezember"
    assert display_name(raw, "From") == "Acme GmbH & Co. KG"
    assert display_name(raw, "To") == "Jörg Müller"
    assert parsed["To"].addresses[0].addr_spec == "joerg@example.de"
    assert body_text(parsed, "text/plain") == text
    assert body_text(parsed, "text/html") == html
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == name
    assert attachment.get_content() == b"\0\r\n\xff"
    assert max(map(len, header_lines(raw))) <= 78


# -- Properties ------------------------------------------------------------

# Surrogates can't be encoded as UTF-8, so no request can carry them.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
HEADER_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=120,
)
BODY = st.one_of(
    TEXT,
    st.lists(
        st.one_of(
            st.just("."), st.just(""), st.text("ab é", min_size=990, max_size=1100)
        ),
        max_size=5,
    ).map("\n".join),
)
ATTACHMENTS = st.lists(
    st.builds(
        Attachment,
        filename=HEADER_TEXT,
        content_type=st.sampled_from(["application/pdf", "image/png", "text/csv"]),
        content=st.binary(max_size=300),
    ),
    max_size=3,
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    subject=HEADER_TEXT,
    sender_name=HEADER_TEXT,
    recipient_name=HEADER_TEXT,
    text=st.none() | BODY,
    html=st.none() | BODY,
    attachments=ATTACHMENTS,
)
def test_round_trip_property(
    subject: str,
    sender_name: str,
    recipient_name: str,
    text: str | None,
    html: str | None,
    attachments: tuple[Attachment, ...],
) -> None:
    message = make_message(
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        sender=Address("no-reply", "acme.example", sender_name),
        recipient=Address("ada", "example.com", recipient_name),
    )
    raw = build(message)
    parsed = parse(raw)

    assert line_problems(raw) == []
    assert foldable_long_lines(raw) == []
    assert parsed["Subject"] == subject
    assert display_name(raw, "From") == sender_name
    assert display_name(raw, "To") == recipient_name
    assert parsed["To"].addresses[0].addr_spec == "ada@example.com"
    if text is not None:
        assert body_text(parsed, "text/plain") == expected_text(text)
    if html is not None:
        assert body_text(parsed, "text/html") == expected_text(html)
    received = list(parsed.iter_attachments())
    contents = [a.get_payload(decode=True) for a in received]
    assert contents == [a.content for a in attachments]
    # get_filename() strips whitespace, so the parameter is read directly.
    filenames = [a["Content-Disposition"].params.get("filename", "") for a in received]
    assert filenames == [a.filename for a in attachments]


def test_raw_content_sent_unchanged() -> None:
    raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    message = attrs.evolve(
        make_message(), content=MessageContent(subject="hi", raw=raw)
    )
    built = build_message_bytes(
        message, date=NOW, extra_headers=[("X-Sendarix-Message-Id", "msg_1")]
    )
    assert built == b"X-Sendarix-Message-Id: msg_1\r\n" + raw


# -- message/* and multipart/* attachments ---------------------------------

FORWARDED = b"From: a@example.com\nSubject: hi\n\nForwarded body.\n"


def test_rfc822_attachment_7bit() -> None:
    raw = build(
        make_message(attachments=(Attachment("fw.eml", "message/rfc822", FORWARDED),))
    )
    part = next(parse(raw).iter_attachments())

    assert part["Content-Transfer-Encoding"] == "7bit"
    assert line_problems(raw) == []
    inner = part.get_content()
    assert inner["Subject"] == "hi"


def test_rfc822_attachment_8bit_becomes_global() -> None:
    content = "Subject: Grüße\r\n\r\nHallo\r\n".encode()
    raw = build(
        make_message(attachments=(Attachment("fw.eml", "message/rfc822", content),))
    )
    part = next(parse(raw).iter_attachments())

    assert part.get_content_type() == "message/global"
    assert part["Content-Transfer-Encoding"] == "base64"


def test_multipart_attachment_octet_stream() -> None:
    content = b"--x\r\n\r\nbody\r\n--x--\r\n"
    raw = build(
        make_message(attachments=(Attachment("parts.bin", "multipart/mixed", content),))
    )
    part = next(parse(raw).iter_attachments())

    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == content


def test_delivery_status_long_line_octet_stream() -> None:
    content = b"Reporting-MTA: dns; " + b"x" * 1200 + b"\r\n"
    raw = build(
        make_message(
            attachments=(Attachment("r.txt", "message/delivery-status", content),)
        )
    )
    part = next(parse(raw).iter_attachments())

    assert part.get_content_type() == "application/octet-stream"
    assert line_problems(raw) == []
