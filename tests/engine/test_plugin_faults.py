"""Backends from plugins that misbehave fail one attempt, not the engine.

Each test registers a plugin with the real plugin manager and runs the
engine on a SQLite file, in sink mode: nothing here opens a connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from sendarix_backends.delivery import DeliveryWorker
from sendarix_backends.engine import Engine
from sendarix_backends.hookspecs import hookimpl
from sendarix_backends.plugins import get_plugin_manager
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.errors import ConfigurationError, NotFoundError
from sendarix_core.memory import MemoryStore
from sendarix_core.model import Message, SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body

pytestmark = pytest.mark.anyio

ACCEPTED = SmtpReply(code=250, enhanced_code="2.0.0", text="ok", mx_host="plugin")


class ScriptedTransport:
    """Returns its replies in turn, then 250; records every envelope."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.envelopes: list[Envelope] = []

    async def deliver(self, envelope: Envelope) -> Any:
        self.envelopes.append(envelope)
        return self.replies.pop(0) if self.replies else ACCEPTED

    async def aclose(self) -> None:
        pass


class RaisingSender:
    def __init__(self) -> None:
        self.closed = False

    async def post(self, url: str, headers: Any, body: bytes) -> Any:
        raise RuntimeError("sender broken on purpose")

    async def aclose(self) -> None:
        self.closed = True


class Backends:
    def __init__(
        self, transport: object = None, sender: object = None, store: object = None
    ) -> None:
        self._transport = transport
        self._sender = sender
        self._store = store

    @hookimpl
    def sendarix_storage(self, settings: Settings) -> Any:
        return self._store

    @hookimpl
    def sendarix_queue(self, settings: Settings, storage: Any) -> Any:
        return self._store

    @hookimpl
    def sendarix_transport(self, settings: Settings) -> Any:
        return self._transport

    @hookimpl
    def sendarix_webhook_sender(self, settings: Settings) -> Any:
        return self._sender


def build(
    tmp_path: Path, plugin: Backends, *, workers: bool = False, **settings: Any
) -> Engine:
    manager = get_plugin_manager()
    manager.register(plugin)
    # Smarthost mode, so the default rule takes the plugin's transport; the
    # smarthost itself is never contacted.
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'sendarix.db'}",
        "delivery_mode": "smarthost",
        "smarthost": "smtp://127.0.0.1:9",
        "poll_interval": 0.05,
        "webhook_allow_private": True,
    }
    values.update(settings)
    return Engine.from_settings(
        Settings(**values),
        plugin_manager=manager,
        clock=None if workers else ManualClock(datetime.now(UTC)),
        workers=workers,
    )


async def deliver_one(engine: Engine) -> Message:
    """Send one message, run one delivery cycle and return the message."""
    async with engine:
        sent = await engine.send(message_body())
        assert await engine.deliver_due() == 1
        return await engine.get_message(sent.message_id)


async def test_plugin_transport_used(tmp_path: Path) -> None:
    transport = ScriptedTransport()

    message = await deliver_one(build(tmp_path, Backends(transport)))

    assert message.status is MessageStatus.DELIVERED
    assert message.last_reply is not None
    assert message.last_reply.mx_host == "plugin"
    assert [envelope.rcpt_to for envelope in transport.envelopes] == [
        message.recipient.email
    ]


class FailingCloseTransport(ScriptedTransport):
    async def aclose(self) -> None:
        raise RuntimeError("close broken on purpose")


async def test_failing_transport_close_still_closes_database(tmp_path: Path) -> None:
    engine = build(tmp_path, Backends(FailingCloseTransport()))

    with pytest.raises(RuntimeError, match="close broken on purpose"):
        await deliver_one(engine)

    # SQLite removes the WAL file when its last connection closes.
    assert (tmp_path / "sendarix.db").exists()
    assert not (tmp_path / "sendarix.db-wal").exists()


async def test_sink_mode_never_calls_plugin_transport(tmp_path: Path) -> None:
    transport = ScriptedTransport()

    message = await deliver_one(
        build(tmp_path, Backends(transport), delivery_mode="sink")
    )

    assert message.status is MessageStatus.DELIVERED
    assert message.last_reply is not None
    assert message.last_reply.mx_host == "sink"
    assert transport.envelopes == []


@pytest.mark.parametrize("reply", [None, "250 ok"])
async def test_transport_wrong_reply_defers_message(
    tmp_path: Path, reply: object
) -> None:
    transport = ScriptedTransport(reply)

    message = await deliver_one(build(tmp_path, Backends(transport)))

    assert message.status is MessageStatus.DEFERRED
    assert message.last_reply is not None
    assert message.last_reply.enhanced_code == "4.3.0"
    assert "not an SmtpReply" in message.last_reply.text


async def test_transport_wrong_reply_keeps_worker_running(tmp_path: Path) -> None:
    transport = ScriptedTransport(None)

    async with build(tmp_path, Backends(transport), workers=True) as engine:
        first = await engine.send(message_body())
        second = await engine.send(message_body(recipient="grace@example.com"))
        with anyio.fail_after(10):
            while (await engine.get_message(second.message_id)).status is not (
                MessageStatus.DELIVERED
            ):
                await anyio.sleep(0.05)
        deferred = await engine.get_message(first.message_id)
        stopped = engine.stopped_tasks

    assert stopped == ()
    assert deferred.status is MessageStatus.DEFERRED


async def test_raising_webhook_sender_fails_the_attempt(tmp_path: Path) -> None:
    sender = RaisingSender()

    async with build(tmp_path, Backends(sender=sender)) as engine:
        assert engine.events is not None
        endpoint = await engine.events.webhooks.create("http://127.0.0.1:9/")
        await engine.send(message_body())
        await engine.events.processor.drain()
        assert await engine.events.dispatcher.run_once() == 1
        attempts = await engine.events.webhooks.attempts(endpoint.id)

    [attempt] = attempts.items
    assert attempt.status_code is None
    assert attempt.error is not None
    assert "sender broken on purpose" in attempt.error
    assert str(attempt.outcome) == "retrying"


@pytest.mark.parametrize(
    ("plugin", "hook"),
    [
        (Backends(transport=42), "sendarix_transport"),
        (
            Backends(transport=ScriptedTransport(), sender="x"),
            "sendarix_webhook_sender",
        ),
    ],
)
def test_hook_returning_junk_refused(
    tmp_path: Path, plugin: Backends, hook: str
) -> None:
    with pytest.raises(ConfigurationError, match=hook):
        build(tmp_path, plugin)


async def test_sender_closed_without_event_services(tmp_path: Path) -> None:
    sender = RaisingSender()
    plugin = Backends(ScriptedTransport(), sender, MemoryStore())

    async with build(tmp_path, plugin) as engine:
        assert engine.events is None

    assert sender.closed


async def test_own_exception_leaves_engine_unwrapped(tmp_path: Path) -> None:
    engine = build(tmp_path, Backends(ScriptedTransport()), workers=True)

    with pytest.raises(NotFoundError):
        async with engine:
            await engine.get_message("msg_missing")


async def test_cancelled_engine_exits_cleanly(tmp_path: Path) -> None:
    engine = build(tmp_path, Backends(ScriptedTransport()), workers=True)

    with anyio.move_on_after(0.2) as scope:
        async with engine:
            await anyio.sleep_forever()

    assert scope.cancelled_caught
    assert engine.stopped_tasks == ()


# A hang here can't be cut short from inside the event loop: the task
# group's start() waits for its task in a shielded scope.
@pytest.mark.timeout(30)
@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1])
async def test_engine_cancelled_while_starting_exits(
    tmp_path: Path, delay: float
) -> None:
    engine = build(tmp_path, Backends(ScriptedTransport()), workers=True)

    with anyio.move_on_after(delay) as scope:
        async with engine:
            await anyio.sleep_forever()

    assert scope.cancelled_caught


async def test_own_exception_survives_cancelled_scope(tmp_path: Path) -> None:
    engine = build(tmp_path, Backends(ScriptedTransport()), workers=True)

    async def fail_in_cancelled_scope() -> None:
        with anyio.CancelScope() as scope:
            async with engine:
                scope.cancel()
                raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await fail_in_cancelled_scope()


async def test_start_cancelled_midway_exits_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_start(self: DeliveryWorker, *, task_status: Any) -> None:
        await anyio.sleep(5)
        task_status.started()

    monkeypatch.setattr(DeliveryWorker, "run", slow_start)
    engine = build(tmp_path, Backends(ScriptedTransport()), workers=True)

    with anyio.move_on_after(0.3) as scope:
        async with engine:
            pytest.fail("the engine started")

    assert scope.cancelled_caught
    # The task group was left: this scope and the test's own still nest.
    with anyio.fail_after(1):
        await anyio.sleep(0)
