"""A test key's message: the whole pipeline, webhooks included, but no SMTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Environment
from sendarix_http.app import create_app
from tests.support.smtp_server import SmtpServer
from tests.webhooks.conftest import message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

DELIVERED_TYPES = ["message.queued", "message.accepted", "message.delivered"]


@pytest.fixture
def clock() -> ManualClock:
    # Receivers check webhook-timestamp against the wall clock.
    return ManualClock(datetime.now(UTC))


async def test_test_key_gets_webhooks(
    engine: Engine,
    services: EventServices,
    receiver: Receiver,
    smtp_server: SmtpServer,
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    secret, _ = await engine.create_api_key("ci", environment=Environment.TEST)
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        accepted = await client.post("/v1/messages", json=message_body())
    message_id = accepted.json()["message_id"]

    await engine.deliver_due()
    await services.processor.drain()
    while await services.dispatcher.run_once():
        pass

    payloads = [
        Webhook(endpoint.secret).verify(request["body"], request["headers"])
        for request in receiver.wait_for(3)
    ]
    assert [payload["type"] for payload in payloads] == DELIVERED_TYPES
    assert {payload["data"]["message_id"] for payload in payloads} == {message_id}
    assert [payload["test_mode"] for payload in payloads] == [True] * 3
    assert smtp_server.connections == 0
    assert smtp_server.messages == []
