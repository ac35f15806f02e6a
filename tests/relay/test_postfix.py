"""Postfix with Sendarix as its relay host forwards what a legacy
application handed to ``sendmail``."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.model import Message
from sendarix_core.ports import MessageQuery
from sendarix_http.relay import Relay
from tests.relay.conftest import RECIPIENT, SENDER
from tests.relay.postfix import PostfixInstance, postfix_unavailable
from tests.support.smtp_server import SmtpServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        postfix_unavailable() is not None, reason=str(postfix_unavailable())
    ),
]

# What a legacy application writes: LF line ends and no Message-ID or Date.
LEGACY_MESSAGE = (
    f"From: Billing <{SENDER}>\n"
    f"To: {RECIPIENT}\n"
    "Subject: Invoice 2026-0042\n"
    "X-Sendarix-Tags: invoice\n"
    "\n"
    "Your invoice is attached.\n"
    ".\n"
    "A line with a single dot came before this one.\n"
).encode()


@pytest.fixture
def postfix(relay_settings: Settings, api_key: str) -> Iterator[PostfixInstance]:
    with PostfixInstance(
        relay_port=relay_settings.relay_port, username="legacy-app", password=api_key
    ) as instance:
        yield instance


async def wait_for_message(engine: Engine, postfix: PostfixInstance) -> Message:
    """Wait for Postfix to hand over one message; Postfix runs on its own."""
    with anyio.fail_after(60):
        while True:
            items = (await engine.list_messages(MessageQuery())).items
            if items:
                return items[0]
            await anyio.sleep(0.2)
    raise AssertionError(postfix.log())  # pragma: no cover


async def test_postfix_forwards_legacy_message(
    relay: Relay,
    engine: Engine,
    postfix: PostfixInstance,
    smtp_server: SmtpServer,
) -> None:
    await anyio.to_thread.run_sync(postfix.sendmail, LEGACY_MESSAGE, SENDER)

    try:
        message = await wait_for_message(engine, postfix)
    except TimeoutError:
        pytest.fail(f"Postfix did not relay the message:\n{postfix.log()}")
    assert message.recipient.email == RECIPIENT
    assert message.sender.email == SENDER
    assert message.content.subject == "Invoice 2026-0042"
    assert message.tags == ("invoice",)
    # Postfix added the Message-ID, which Sendarix keeps.
    assert message.message_id_header.endswith("@legacy.sendarix.test>")

    await engine.deliver_due()
    [received] = smtp_server.wait_for_messages(1)
    assert b"\r\n..\r\nA line with a single dot" not in received.data
    assert b"\r\n.\r\nA line with a single dot" in received.data
    assert b"X-Sendarix-Tags" not in received.data
    assert b"Received: " in received.data
    assert (await engine.get_message(message.id)).status == "delivered"


async def test_postfix_used_tls_and_auth(
    relay: Relay, engine: Engine, postfix: PostfixInstance
) -> None:
    await anyio.to_thread.run_sync(postfix.sendmail, LEGACY_MESSAGE, SENDER)
    message = await wait_for_message(engine, postfix)

    # The relay refuses MAIL without AUTH and AUTH without TLS, so a sent
    # message proves both; Postfix logs the reply with the message id.
    with anyio.fail_after(30):
        while f"queued as {message.id}" not in postfix.log():
            await anyio.sleep(0.2)
    log = postfix.log()
    assert "status=sent" in log
    assert "TLS connection established to 127.0.0.1[127.0.0.1]:" in log
