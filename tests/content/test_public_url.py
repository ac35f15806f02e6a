"""SENDARIX_PUBLIC_URL: the URLs accepted for unsubscribe links."""

from __future__ import annotations

import logging
import re
from email import policy
from email.parser import BytesParser

import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings, load_settings
from sendarix_core.clock import ManualClock
from sendarix_core.errors import ConfigurationError
from tests.content.conftest import message_body
from tests.support.smtp_server import SmtpServer


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@mail.sendarix.test",
        "https://user@mail.sendarix.test",
        "http://user:secret@localhost:8080",
    ],
)
def test_userinfo_rejected_without_echo(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_PUBLIC_URL": url})

    message = str(raised.value)
    assert "user name or password" in message
    assert "user" not in message.replace("user name", "")
    assert "secret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080",
        "http://app.localhost",
        "http://127.0.0.1:8080",
        "http://127.0.1.1",
        "http://[::1]:8080",
        # Accepted as before one-click unsubscribe existed; these get a
        # List-Unsubscribe without List-Unsubscribe-Post, and a warning.
        "http://mail.sendarix.test",
        "http://10.0.0.1:8080",
        "https://mail.sendarix.test",
        "https://mail.sendarix.test/mail",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert Settings(public_url=url).public_url == url


@pytest.mark.anyio
async def test_http_loopback_link_without_one_click(
    settings: Settings,
    clock: ManualClock,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = attrs.evolve(settings, public_url="http://localhost:8080")

    with caplog.at_level(logging.WARNING, logger="sendarix.content"):
        async with Engine.from_settings(local, clock=clock, workers=False) as engine:
            await engine.send(message_body(list_unsubscribe=True))
            await engine.deliver_due()

    [received] = smtp_server.wait_for_messages(1)
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    link = str(parsed["List-Unsubscribe"])
    actions = [getattr(record, "action", None) for record in caplog.records]
    assert re.fullmatch(r"<http://localhost:8080/u/msg_\S+>", link)
    assert parsed["List-Unsubscribe-Post"] is None
    assert "public_url_not_https" in actions
