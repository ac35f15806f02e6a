"""A clean stop of an engine that posts webhooks: posts in flight and leases."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.hookspecs import hookimpl
from sendarix_backends.plugins import get_plugin_manager
from sendarix_backends.settings import Settings
from sendarix_backends.webhooks.model import AttemptOutcome
from sendarix_core.ports import WebhookResponse
from sendarix_core.states import EventType
from tests.webhooks.conftest import message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

QUEUED_ONLY = [str(EventType.QUEUED)]


class HangingSender:
    """A webhook sender whose posts never end, as one ignoring its timeout."""

    def __init__(self) -> None:
        self.posted = anyio.Event()

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookResponse:
        self.posted.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


class SenderPlugin:
    def __init__(self, sender: HangingSender) -> None:
        self._sender = sender

    @hookimpl
    def sendarix_webhook_sender(self, settings: Settings) -> Any:
        return self._sender


async def test_stop_waits_for_post_in_flight(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.start(delay=1.5)
    running = attrs.evolve(settings, poll_interval=0.05)

    async with Engine.from_settings(running) as engine:
        assert engine.events is not None
        endpoint = await engine.events.webhooks.create(
            receiver.url, event_types=QUEUED_ONLY
        )
        await engine.send(message_body())
        await anyio.to_thread.run_sync(receiver.wait_for, 1)

    async with Engine.from_settings(running, workers=False) as engine:
        assert engine.events is not None
        attempts = (await engine.events.webhooks.attempts(endpoint.id)).items

    [attempt] = attempts
    assert attempt.outcome is AttemptOutcome.SUCCEEDED
    assert attempt.status_code == 200


async def test_stop_releases_unfinished_post(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    sender = HangingSender()
    manager = get_plugin_manager()
    manager.register(SenderPlugin(sender))
    running = attrs.evolve(settings, poll_interval=0.05, webhook_timeout=1)

    with caplog.at_level(logging.INFO, logger="sendarix.engine"):
        async with Engine.from_settings(running, plugin_manager=manager) as engine:
            assert engine.events is not None
            await engine.events.webhooks.create(
                "http://127.0.0.1:9/", event_types=QUEUED_ONLY
            )
            await engine.send(message_body())
            with anyio.fail_after(10):
                await sender.posted.wait()

    async with Engine.from_settings(running, workers=False) as engine:
        assert engine.events is not None
        claimed = await engine.events.storage.claim_deliveries(
            "next-worker", datetime.now(UTC), 10, timedelta(seconds=30)
        )

    assert len(claimed) == 1
    [stopped] = [
        r for r in caplog.records if getattr(r, "action", None) == "worker_stopped"
    ]
    assert stopped.abandoned_webhooks == 1
