"""Compare build_message_bytes with the standard library's email package.

Both sides build the same ~2 KB message (plain text and HTML alternatives, a
non-ASCII subject and recipient name) from scratch, N times per run. The
email package side uses EmailMessage with policy.SMTP and as_bytes().

Usage: .venv/bin/python benchmarks/mime_build.py [--count N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

from sendarix_core.mime import build_message_bytes
from sendarix_core.model import Address, Message, MessageContent
from sendarix_core.states import MessageStatus, Priority

DATE = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)
SUBJECT = "Ihre Bestellung Nr. 48213 ist unterwegs \u2013 Lieferung am Freitag"
SENDER = Address("orders", "shop.example", "Beispiel Shop")
TEXT = (
    "Hallo Jörg,\n\n"
    "vielen Dank für Ihre Bestellung. Ihr Paket hat unser Lager verlassen und\n"
    "wird voraussichtlich am Freitag zugestellt.\n\n"
    "Sendungsnummer: 00340434161234567890\n"
    "Paketdienst: Example Logistics\n\n"
    "Sie können den Status jederzeit unter\n"
    "https://shop.example/orders/48213/tracking verfolgen.\n\n"
    "Artikel:\n"
    "  1 x Espressomaschine Modell 7        189,00 EUR\n"
    "  2 x Kaffeebohnen, 1 kg                 31,80 EUR\n"
    "  Versand                                 0,00 EUR\n"
    "  Summe                                 220,80 EUR\n\n"
    "Viele Grüße\n"
    "Ihr Beispiel Shop\n"
)
HTML = (
    '<!doctype html>\n<html><body style="font-family: sans-serif">\n'
    "<p>Hallo Jörg,</p>\n"
    "<p>vielen Dank für Ihre Bestellung. Ihr Paket hat unser Lager verlassen "
    "und wird voraussichtlich am <strong>Freitag</strong> zugestellt.</p>\n"
    "<table>\n"
    "<tr><td>Sendungsnummer</td><td>00340434161234567890</td></tr>\n"
    "<tr><td>Paketdienst</td><td>Example Logistics</td></tr>\n"
    "</table>\n"
    '<p><a href="https://shop.example/orders/48213/tracking">Sendung '
    "verfolgen</a></p>\n"
    "<table>\n"
    "<tr><td>1 x Espressomaschine Modell 7</td><td>189,00 EUR</td></tr>\n"
    "<tr><td>2 x Kaffeebohnen, 1 kg</td><td>31,80 EUR</td></tr>\n"
    "<tr><td>Versand</td><td>0,00 EUR</td></tr>\n"
    "<tr><td><strong>Summe</strong></td><td><strong>220,80 EUR</strong></td></tr>\n"
    "</table>\n"
    "<p>Viele Grüße<br>Ihr Beispiel Shop</p>\n"
    "</body></html>\n"
)


def make_messages(count: int) -> list[Message]:
    content = MessageContent(subject=SUBJECT, text=TEXT, html=HTML)
    return [
        Message(
            id=f"msg_01jf{index:022d}",
            status=MessageStatus.QUEUED,
            priority=next(iter(Priority)),
            sender=SENDER,
            recipient=Address(f"joerg{index}", "example.de", "Jörg Müller"),
            content=content,
            created_at=DATE,
            updated_at=DATE,
        )
        for index in range(count)
    ]


def build_with_sendarix(messages: list[Message]) -> int:
    total = 0
    for message in messages:
        total += len(build_message_bytes(message, date=DATE))
    return total


def build_with_email_package(messages: list[Message]) -> int:
    total = 0
    for message in messages:
        email = EmailMessage(policy=policy.SMTP)
        email["From"] = str(message.sender)
        email["To"] = str(message.recipient)
        email["Subject"] = message.content.subject
        email["Date"] = DATE
        email["Message-ID"] = f"<{message.id}@{message.sender.domain}>"
        email.set_content(message.content.text)
        email.add_alternative(message.content.html, subtype="html")
        total += len(email.as_bytes())
    return total


def measure(
    build: Callable[[list[Message]], int], messages: list[Message], runs: int
) -> tuple[list[float], int]:
    """Return the messages per second of each run and the output size."""
    rates = []
    size = 0
    for _ in range(runs):
        start = time.perf_counter()
        size = build(messages)
        elapsed = time.perf_counter() - start
        rates.append(len(messages) / elapsed)
    return rates, size // len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=20_000, help="messages built per run"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per builder")
    arguments = parser.parse_args()
    messages = make_messages(arguments.count)

    print(f"python {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"platform {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{arguments.count} messages per run, {arguments.runs} runs each")

    medians = {}
    for name, build in (
        ("build_message_bytes", build_with_sendarix),
        ("email.message (policy.SMTP)", build_with_email_package),
    ):
        rates, size = measure(build, messages, arguments.runs)
        medians[name] = statistics.median(rates)
        print(
            f"{name:28} {medians[name]:>9,.0f} messages/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}), {size} bytes each"
        )

    ratio = medians["build_message_bytes"] / medians["email.message (policy.SMTP)"]
    print(f"build_message_bytes is {ratio:.1f} times as fast")


if __name__ == "__main__":
    main()
