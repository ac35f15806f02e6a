"""The relay sends 421 before it closes a session on its own (RFC 5321)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.ports import MessageQuery
from sendarix_http.relay import Relay
from tests.relay.conftest import (
    RECIPIENT,
    SENDER,
    FakeMonotonic,
    message_bytes,
)
from tests.relay.test_protocol_safety import RawSession
from tests.support.certificates import TestCertificate

pytestmark = pytest.mark.anyio


async def stored_count(engine: Engine) -> int:
    return len((await engine.list_messages(MessageQuery(limit=100))).items)


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


async def test_slow_commit_gets_250_not_421(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send_raw = engine.send_raw

    async def slow_send_raw(*args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(1.0)
        return await send_raw(*args, **kwargs)

    monkeypatch.setattr(engine, "send_raw", slow_send_raw)
    impatient = attrs.evolve(relay_settings, relay_idle_timeout=0.3)
    async with Relay(
        engine, impatient, tls_context=certificate.server_context(), clock=relay_clock
    ):
        session = await anyio.to_thread.run_sync(
            RawSession, impatient.relay_port, certificate, api_key
        )
        reply = await anyio.to_thread.run_sync(
            session.send_data, message_bytes() + b".\r\n"
        )
        noop = await anyio.to_thread.run_sync(session.command, b"NOOP")

    assert reply.startswith(b"250 2.0.0")
    assert noop.startswith(b"250")
    assert await stored_count(engine) == 1


async def test_data_sent_line_by_line_is_not_idle(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
    api_key: str,
) -> None:
    impatient = attrs.evolve(relay_settings, relay_idle_timeout=0.5)

    def send_slowly(session: RawSession) -> bytes:
        assert session.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
        assert session.command(f"RCPT TO:<{RECIPIENT}>".encode()).startswith(b"250")
        assert session.command(b"DATA").startswith(b"354")
        session.socket.sendall(message_bytes())
        # Eight lines 0.2 seconds apart take longer than the idle timeout.
        for number in range(8):
            time.sleep(0.2)
            session.socket.sendall(f"line {number}\r\n".encode())
        session.socket.sendall(b".\r\n")
        return session.reply()

    async with Relay(
        engine, impatient, tls_context=certificate.server_context(), clock=relay_clock
    ):
        session = await anyio.to_thread.run_sync(
            RawSession, impatient.relay_port, certificate, api_key
        )
        reply = await anyio.to_thread.run_sync(send_slowly, session)

    assert reply.startswith(b"250 2.0.0")
    assert await stored_count(engine) == 1


async def test_stopping_relay_waits_for_commit(
    engine: Engine,
    relay_settings: Settings,
    certificate: TestCertificate,
    relay_clock: FakeMonotonic,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    committing = anyio.Event()
    send_raw = engine.send_raw

    async def slow_send_raw(*args: Any, **kwargs: Any) -> Any:
        committing.set()
        await anyio.sleep(0.5)
        return await send_raw(*args, **kwargs)

    monkeypatch.setattr(engine, "send_raw", slow_send_raw)
    relay = Relay(
        engine,
        relay_settings,
        tls_context=certificate.server_context(),
        clock=relay_clock,
    )
    await relay.start()
    session = await anyio.to_thread.run_sync(
        RawSession, relay_settings.relay_port, certificate, api_key
    )
    async with anyio.create_task_group() as tasks:
        replies: list[bytes] = []

        async def send() -> None:
            data = message_bytes() + b".\r\n"
            replies.append(await anyio.to_thread.run_sync(session.send_data, data))
            replies.append(await anyio.to_thread.run_sync(session.reply))

        tasks.start_soon(send)
        await committing.wait()
        await relay.aclose()

    assert replies[0].startswith(b"250 2.0.0")
    assert replies[1].startswith(b"421 4.3.2")
    assert await stored_count(engine) == 1
