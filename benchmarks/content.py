"""Messages per second on one core: render + MIME build, and DKIM signing.

Render + build renders a three-part template (subject, text, HTML with
escaped data) in the Sendarix sandbox and builds the message, once with
``build_message_bytes`` and once with Python's ``email`` package and its
default policy (``EmailMessage``, ``policy.default``, ``as_bytes()``).
Signing signs the built ~2 KB message with relaxed/relaxed canonicalization,
once with Sendarix's signer (``cryptography``, OpenSSL) and once with
dkimpy, for RSA 2048 and for Ed25519. Everything runs in this one process
and thread, so each figure is per core.

Usage: .venv/bin/python -m benchmarks.content [--seconds S] [--runs R]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from benchmarks.machine import describe_machine
from benchmarks.mime_build import HTML, SENDER, TEXT
from sendarix_backends.dkim import DkimSigner, SigningKey
from sendarix_backends.templates import TemplateVersion
from sendarix_backends.templates.rendering import compile_template
from sendarix_core.mime import build_message_bytes
from sendarix_core.model import Address, Message, MessageContent
from sendarix_core.states import MessageStatus, Priority

DATE = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)
RECIPIENT = Address("joerg", "example.de", "Jörg Müller")
# The benchmark message with its variable parts as template variables.
TEMPLATE = TemplateVersion(
    version=1,
    subject="Ihre Bestellung Nr. {{ order }} ist unterwegs",
    text=TEXT.replace("Jörg", "{{ name }}").replace("48213", "{{ order }}"),
    html=HTML.replace("Jörg", "{{ name }}").replace("48213", "{{ order }}"),
    created_at=DATE,
)
DATA = {"name": "Jörg <Müller>", "order": "48213"}


def render_and_build(index: int) -> bytes:
    rendered = COMPILED.render(DATA)
    content = MessageContent(
        subject=rendered.subject or "", text=rendered.text, html=rendered.html
    )
    message = Message(
        id=f"msg_01jf{index:022d}",
        status=MessageStatus.QUEUED,
        priority=Priority.NORMAL,
        sender=SENDER,
        recipient=RECIPIENT,
        content=content,
        created_at=DATE,
        updated_at=DATE,
    )
    return build_message_bytes(message, date=DATE)


def render_and_build_with_email_package(index: int) -> bytes:
    rendered = COMPILED.render(DATA)
    email = EmailMessage(policy=policy.default)
    email["From"] = str(SENDER)
    email["To"] = str(RECIPIENT)
    email["Subject"] = rendered.subject
    email["Date"] = DATE
    email["Message-ID"] = f"<msg_01jf{index:022d}@{SENDER.domain}>"
    email.set_content(rendered.text)
    email.add_alternative(rendered.html, subtype="html")
    return email.as_bytes()


COMPILED = compile_template("order-shipped", TEMPLATE)
MESSAGE = render_and_build(0)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_SIGNER = DkimSigner("shop.example", [SigningKey("s1", RSA_KEY)])
ED25519_SIGNER = DkimSigner("shop.example", [SigningKey("s2", ED25519_KEY)])
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
# dkimpy takes the 32-byte Ed25519 seed, base64-encoded.
ED25519_SEED = base64.b64encode(
    ED25519_KEY.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
)
HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]


def sign_rsa(index: int) -> bytes:
    return RSA_SIGNER.sign(MESSAGE, timestamp=1_796_000_000)


def sign_ed25519(index: int) -> bytes:
    return ED25519_SIGNER.sign(MESSAGE, timestamp=1_796_000_000)


def sign_rsa_with_dkimpy(index: int) -> bytes:
    return dkim.sign(
        MESSAGE,
        b"s1",
        b"shop.example",
        RSA_PEM,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=HEADERS,
    )


def sign_ed25519_with_dkimpy(index: int) -> bytes:
    return dkim.sign(
        MESSAGE,
        b"s2",
        b"shop.example",
        ED25519_SEED,
        signature_algorithm=b"ed25519-sha256",
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=HEADERS,
    )


def rate(work: Callable[[int], bytes], seconds: float) -> float:
    """Return how many calls of ``work`` one second holds, over ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            work(count)
            count += 1
    return count / (time.perf_counter() - start)


CASES = (
    ("render + build_message_bytes", render_and_build),
    ("render + email.message (policy.default)", render_and_build_with_email_package),
    ("DKIM RSA 2048, Sendarix (cryptography)", sign_rsa),
    ("DKIM RSA 2048, dkimpy", sign_rsa_with_dkimpy),
    ("DKIM Ed25519, Sendarix (cryptography)", sign_ed25519),
    ("DKIM Ed25519, dkimpy (PyNaCl)", sign_ed25519_with_dkimpy),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per case")
    arguments = parser.parse_args()

    for line in describe_machine():
        print(line)
    print(
        f"message: {len(MESSAGE)} bytes; {arguments.runs} runs of {arguments.seconds} s"
    )
    for label, work in CASES:
        rates = [rate(work, arguments.seconds) for _ in range(arguments.runs)]
        print(
            f"{label:42} {statistics.median(rates):>9,.0f} messages/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f})"
        )


if __name__ == "__main__":
    main()
