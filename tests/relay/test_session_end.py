"""The relay sends 421 before it closes a session on its own (RFC 5321)."""

from __future__ import annotations

import anyio
import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_http.relay import Relay
from tests.relay.conftest import FakeMonotonic
from tests.relay.test_protocol_safety import RawSession
from tests.support.certificates import TestCertificate

pytestmark = pytest.mark.anyio


async def test_idle_session_gets_421(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
    api_key: str,
) -> None:
    impatient = attrs.evolve(relay_settings, relay_idle_timeout=0.5)
    async with Relay(
        engine, impatient, tls_context=certificate.server_context(), clock=relay_clock
    ):
        session = await anyio.to_thread.run_sync(
            RawSession, impatient.relay_port, certificate, api_key
        )
        reply = await anyio.to_thread.run_sync(session.reply)

    assert reply.startswith(b"421 4.4.2")


async def test_stopping_relay_sends_421(
    relay: Relay,
    relay_settings: Settings,
    certificate: TestCertificate,
    api_key: str,
) -> None:
    session = await anyio.to_thread.run_sync(
        RawSession, relay_settings.relay_port, certificate, api_key
    )

    await relay.aclose()
    reply = await anyio.to_thread.run_sync(session.reply)

    assert reply.startswith(b"421 4.3.2")
