"""End of data, dot-unstuffing and SMTP smuggling, over a raw TLS socket.

A client library would fix up bare line breaks, so these tests write the
bytes themselves.
"""

from __future__ import annotations

import base64
import contextlib
import socket

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.ports import MessageQuery
from sendarix_http.relay import Relay
from tests.relay.conftest import RECIPIENT, SENDER
from tests.support.certificates import TestCertificate

pytestmark = pytest.mark.anyio

HEADERS = (
    f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: Safety\r\n"
    "Date: Fri, 04 Dec 2026 16:51:23 +0000\r\n"
    "Message-ID: <safety@acme.example>\r\n\r\n"
).encode()

# What a smuggler appends after a bare line break and a dot: a second
# transaction that a server ending data on "<LF>.<CRLF>" would run.
SMUGGLED = (
    "MAIL FROM:<admin@acme.example>\r\n"
    f"RCPT TO:<{RECIPIENT}>\r\n"
    "DATA\r\n"
    "From: admin@acme.example\r\nSubject: smuggled\r\n\r\nhi\r\n"
).encode()


class RawSession:
    """A line-level SMTP session over TLS, authenticated with ``secret`` if set."""

    def __init__(
        self, port: int, certificate: TestCertificate, secret: str | None
    ) -> None:
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = plain.makefile("rb")
        self.socket: socket.socket = plain
        self.reply()
        self.command(b"EHLO client.test")
        self.command(b"STARTTLS")
        context = certificate.client_context()
        self.socket = context.wrap_socket(plain, server_hostname="127.0.0.1")
        self.file = self.socket.makefile("rb")
        self.command(b"EHLO client.test")
        if secret is None:
            return
        blob = base64.b64encode(b"\0legacy-app\0" + secret.encode())
        assert self.command(b"AUTH PLAIN " + blob).startswith(b"235")

    def reply(self) -> bytes:
        """Read one reply, all of its lines."""
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.socket.sendall(line + b"\r\n")
        return self.reply()

    def send_data(self, data: bytes) -> bytes:
        assert self.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
        assert self.command(f"RCPT TO:<{RECIPIENT}>".encode()).startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")
        self.socket.sendall(data)
        return self.reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command(b"QUIT")
        self.socket.close()


async def session_replies(
    settings: Settings, certificate: TestCertificate, secret: str, data: bytes
) -> tuple[bytes, bytes]:
    """Send ``data`` after DATA; return the reply and the reply to a NOOP."""

    def run() -> tuple[bytes, bytes]:
        session = RawSession(settings.relay_port, certificate, secret)
        try:
            reply = session.send_data(data)
            return reply, session.command(b"NOOP")
        finally:
            session.close()

    return await anyio.to_thread.run_sync(run)


@pytest.mark.parametrize(
    "separator",
    [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["lf-dot-crlf", "crlf-dot-lf", "lf-dot-lf", "cr-dot-crlf", "crlf-dot-cr"],
)
async def test_smuggling_does_not_split(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
    separator: bytes,
) -> None:
    data = HEADERS + b"first part" + separator + SMUGGLED + b"\r\n.\r\n"
    reply, after = await session_replies(relay_settings, certificate, api_key, data)

    # One reply for the whole data: the bare line break is rejected, and the
    # smuggled commands were read as message content, not run.
    assert reply.startswith(b"550 5.6.0")
    assert after.startswith(b"250")
    assert (await engine.list_messages(MessageQuery())).items == []


async def test_dot_unstuffing(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    body = b"..leading dot\r\n...\r\n. \r\nend\r\n"
    reply, _ = await session_replies(
        relay_settings, certificate, api_key, HEADERS + body + b".\r\n"
    )
    assert reply.startswith(b"250 2.0.0")

    [message] = (await engine.list_messages(MessageQuery())).items
    assert message.content.raw == HEADERS + b".leading dot\r\n..\r\n \r\nend\r\n"


async def test_data_ends_only_on_crlf_dot_crlf(
    relay: Relay,
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    body = b"line\r\n.x\r\n..\r\n"
    reply, _ = await session_replies(
        relay_settings, certificate, api_key, HEADERS + body + b".\r\n"
    )
    assert reply.startswith(b"250 2.0.0")
    [message] = (await engine.list_messages(MessageQuery())).items
    assert message.content.raw == HEADERS + b"line\r\nx\r\n.\r\n"
