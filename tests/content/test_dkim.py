"""DKIM canonicalization and signing, checked with dkimpy as the verifier."""

from __future__ import annotations

import base64
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from sendarix_backends.dkim import (
    DkimSigner,
    SigningKey,
    relaxed_body,
    relaxed_header,
    split_message,
)

MESSAGE = (
    b"From: Acme <no-reply@acme.example>\r\n"
    b"Reply-To: help@acme.example\r\n"
    b"To: ada@example.test\r\n"
    b"Subject:  Your   code\t is\r\n"
    b"  ready \r\n"
    b"Date: Sun, 19 Apr 2026 14:30:00 +0000\r\n"
    b"Message-ID: <msg_1@acme.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"List-Unsubscribe: <https://mail.sendarix.test/u/msg_1.x>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Campaign: april\r\n"
    b"\r\n"
    b"Your code is  847291. \r\n"
    b"\r\n"
    b"\r\n"
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()


def key_records() -> dict[bytes, bytes]:
    rsa_public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_public = ED25519_KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        b"rsa._domainkey.acme.example.": b"v=DKIM1; k=rsa; p="
        + base64.b64encode(rsa_public),
        b"ed._domainkey.acme.example.": b"v=DKIM1; k=ed25519; p="
        + base64.b64encode(ed_public),
    }


RECORDS = key_records()


def lookup(name: bytes, timeout: int = 5) -> bytes | None:
    return RECORDS.get(name if name.endswith(b".") else name + b".")


def sign(message: bytes = MESSAGE) -> bytes:
    signer = DkimSigner(
        "acme.example", [SigningKey("rsa", RSA_KEY), SigningKey("ed", ED25519_KEY)]
    )
    return signer.sign(message, timestamp=1_776_609_000)


def verifies(signed: bytes, index: int) -> bool:
    # dkimpy returns False for a bad signature but raises for a body hash
    # mismatch.
    try:
        return bool(dkim.DKIM(signed).verify(idx=index, dnsfunc=lookup))
    except dkim.DKIMException:
        return False


def test_relaxed_header_rfc_example() -> None:
    # RFC 6376 section 3.4.5.
    assert relaxed_header(b"A: X") == b"a:X"
    assert relaxed_header(b"B : Y\t\r\n\tZ  ") == b"b:Y Z"


def test_relaxed_body_rfc_example() -> None:
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b""),
        (b"\r\n\r\n", b""),
        (b"text", b"text\r\n"),
        (b"text \t", b"text\r\n"),
        (b"a\r\n \r\n", b"a\r\n"),
        (b"a\r\n\tb", b"a\r\n b\r\n"),
    ],
)
def test_relaxed_body_edges(body: bytes, expected: bytes) -> None:
    assert relaxed_body(body) == expected


def test_split_message_keeps_folding() -> None:
    fields, body = split_message(b"A: 1\r\nB: 2\r\n 3\r\n\r\nbody\r\n")

    assert fields == [b"A: 1", b"B: 2\r\n 3"]
    assert body == b"body\r\n"


def test_rsa_signature_verifies() -> None:
    assert verifies(sign(), 1)


def test_ed25519_signature_verifies() -> None:
    assert verifies(sign(), 0)


def test_signature_lists_headers() -> None:
    signed = sign()
    field = signed.split(b"\r\nDKIM-Signature", 1)[0]
    tags = re.sub(rb"\s+", b"", field)
    [names] = re.findall(rb";h=([^;]*);", tags)

    assert b"c=relaxed/relaxed" in tags
    assert names.split(b":") == [
        b"from",
        b"from",
        b"sender",
        b"reply-to",
        b"reply-to",
        b"to",
        b"to",
        b"cc",
        b"subject",
        b"subject",
        b"date",
        b"date",
        b"message-id",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"mime-version",
        b"content-type",
        b"content-type",
        b"content-transfer-encoding",
        b"content-transfer-encoding",
        b"list-id",
        b"list-help",
        b"list-subscribe",
        b"list-post",
        b"list-owner",
        b"list-archive",
        b"list-unsubscribe",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"list-unsubscribe-post",
    ]


def test_signature_lines_folded() -> None:
    many = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" * 50
    signed = sign(MESSAGE.replace(b"X-Campaign:", many + b"X-Campaign:", 1))
    head = signed.split(MESSAGE.split(b"\r\n", 1)[0], 1)[0]
    lines = head.removesuffix(b"\r\n").split(b"\r\n")

    # 51 fields, so 52 names in each of the two signatures.
    assert re.sub(rb"\s+", b"", head).count(b":list-unsubscribe-post") == 104
    assert len(lines) > 20
    assert max(map(len, lines)) <= 78
    assert verifies(signed, 0)
    assert verifies(signed, 1)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"From: Acme <", b"From: Acme Corp <"),
        (b"Reply-To: help@", b"Reply-To: eve@"),
        (b"To: ada@", b"To: eve@"),
        (b"Subject:  Your", b"Subject:  Our"),
        (b"Date: Sun, 19", b"Date: Sun, 18"),
        (b"Message-ID: <msg_1", b"Message-ID: <msg_2"),
        (b"MIME-Version: 1.0", b"MIME-Version: 1.1"),
        (b"charset=utf-8", b"charset=latin-1"),
        (b"Encoding: 7bit", b"Encoding: 8bit"),
        (b"/u/msg_1.x>", b"/u/msg_1.y>"),
        (b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Click"),
        (b"847291", b"847292"),
    ],
)
def test_change_breaks_signatures(old: bytes, new: bytes) -> None:
    signed = sign()
    changed = signed.replace(old, new, 1)

    assert changed != signed
    assert not verifies(changed, 0)
    assert not verifies(changed, 1)


def test_added_from_breaks_signature() -> None:
    signed = sign()
    changed = signed.replace(b"\r\nFrom:", b"\r\nFrom: eve@evil.example\r\nFrom:", 1)

    assert not verifies(changed, 1)


@pytest.mark.parametrize(
    "field",
    [
        b"Sender: eve@evil.example",
        b"Reply-To: eve@evil.example",
        b"Cc: eve@evil.example",
        b"In-Reply-To: <msg_0@acme.example>",
        b"References: <msg_0@acme.example>",
        b"List-Id: <news.acme.example>",
        b"List-Unsubscribe: <https://evil.example/u>",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ],
)
def test_added_absent_field_breaks_signatures(field: bytes) -> None:
    name = field.split(b":", 1)[0]
    message = b"".join(
        line + b"\r\n"
        for line in MESSAGE.split(b"\r\n")[:-1]
        if not line.startswith(name + b":")
    )
    signed = sign(message)
    changed = signed.replace(b"\r\nFrom:", b"\r\n" + field + b"\r\nFrom:", 1)

    assert verifies(signed, 0)
    assert verifies(signed, 1)
    assert changed != signed
    assert not verifies(changed, 0)
    assert not verifies(changed, 1)


def test_whitespace_change_keeps_signature() -> None:
    changed = sign().replace(b"Subject:  Your   code", b"Subject: Your code", 1)

    assert verifies(changed, 1)


def test_key_from_pem() -> None:
    pem = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    key = SigningKey.from_pem("rsa", pem)

    assert str(key.algorithm) == "rsa-sha256"
    assert "PRIVATE" not in repr(key)
